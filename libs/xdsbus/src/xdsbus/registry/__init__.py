"""Shared machinery of the registry watchers (Nacos, Consul, Eureka): following McpBridge from the
event log, running one watch per configured registry, and publishing normalized services.

A registry watcher service implements one class and calls one function:

    from xdsbus.contract.hostnames import higress_hostname
    from xdsbus.registry.api import Credentials, Registry, RegistrySink
    from xdsbus.registry.service_main import run_registry_service

    class NacosRegistry(Registry):
        async def run(self, sink: RegistrySink) -> None:
            ...  # connect to self.config.domain:port, sink.resync([...]), then sink.upsert/delete(...)

    def main(argv=None) -> int:
        return run_registry_service(argv, {"nacos", "nacos2", "nacos3"}, NacosRegistry, "xdsbus-watch-nacos")

Reading an McpBridge (`bridge_registries`, `winning_source`, `type_problem`) lives below, in
xdsbus.model.mcpbridge_registries, shared with the builder so both read McpBridge the same way.

Modules, one job each:

* `api` — the contract: `Registry` (one `spec.registries[]` entry; `run(sink)` raises on failure),
  `RegistrySink` (`resync`, `upsert`, `delete`, `problem`), `Credentials` (`get(secret, key)`);
  `higress_hostname(*labels)` is in xdsbus.contract.hostnames.
* `bridge_follower` — `BridgeFollower(bus, types, system_namespace=, secret_box=, checkpoint_scope=)`:
  the newest checkpoint's McpBridge and Secrets, then an ordered consumer on `xdsbus.events.*.*.McpBridge`
  and `.Secret` after it, folded with the builder's fold code. `run(stop)`; `ready` (caught up once;
  cleared while `gap`: events after the state held are gone from the log); `generation` and
  `wait_changed(generation)`; `desired()` → the registries of `types` by `type/name`; `credentials`
  (`FoldedCredentials`: `get`, `revision`) from the system namespace's sealed Secrets.
* `sink` — `EventSink(bus, config, status, stop=)`: the RegistrySink on the Watcher base, source
  `<type>/<name>`, kind `RegistryService`, key the hostname; endpoints sorted; a hostname whose body did
  not change is not published again; `clear()` is an empty resync.
* `status` — `RegistryStatus(bus, source)`: the registry's entry `Registry/<type>/<name>` in KV
  `xdsbus_status` (problems as warnings, "rejected: registry unreachable" during an outage).
* `supervisor` — `Supervisor(bus, factory, credentials, stop=, retry_base=, retry_cap=)`:
  `reconcile(desired)` starts, restarts (config or credentials changed: stop and recreate) and removes
  registries (then an empty resync of the source); a failing `run` is retried with backoff and its
  services are kept; `stop_all()`; `clear_sources(sources)`; `published_sources(bus, types)`.
* `leadership` — `Leadership(bus, lease_name(service, group), holder, follower, supervisor, ttl=,
  stop=)`: only the holder of the lease `watch-<type>.<group>` runs registries; standbys only follow.
* `service_main` — `run_registry_service(argv, types, factory, prog)`: flags (`--nats-url`,
  `--instance-id`, `--group`, `--lease-ttl`, `--system-namespace`, `--log-format`, `--log-level`, each
  with its XDSBUS_* variable), the SecretBox from the environment, and `run_registries(bus, ...)` until
  SIGTERM; `run_registries` is also usable in-process.
"""
