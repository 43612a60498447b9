"""xdsbus Kubernetes source: lists and watches a cluster and publishes it to the event log."""

from xdsbus_watch_k8s.k8s_watcher import K8sWatcher

__all__ = ["K8sWatcher"]
