"""xdsbus file source: publishes the Kubernetes-style manifests of a directory to the event log."""

from xdsbus_watch_file.file_watcher import MAX_OBJECT_BYTES, FileWatcher, default_source_name

__all__ = ["MAX_OBJECT_BYTES", "FileWatcher", "default_source_name"]
