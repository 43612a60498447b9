#!/bin/sh
# Registers the demo service echo-nacos (group DEFAULT_GROUP, namespace public) in Nacos through its v1
# HTTP open API, with one instance at 127.0.0.1:18081: echo-a, in Envoy's network namespace.
# The instance is ephemeral, as SDK-registered ones are: Nacos drops it 30 s after its last heartbeat,
# so this keeps beating every 5 s and registers again whenever Nacos has forgotten it (code 20404).
set -eu
NACOS="${NACOS:-http://nacos:8848}"
QUERY="serviceName=echo-nacos&groupName=DEFAULT_GROUP&namespaceId=public&ip=127.0.0.1&port=18081&ephemeral=true"

register() {
  curl -fsS -X POST "$NACOS/nacos/v1/ns/instance?$QUERY&weight=1&metadata=%7B%22protocol%22%3A%22http%22%7D"
  echo " registered echo-nacos 127.0.0.1:18081"
}

until curl -fsS "$NACOS/nacos/v1/console/health/readiness" >/dev/null 2>&1; do sleep 2; done
register
while sleep 5; do
  answer="$(curl -sS -X PUT "$NACOS/nacos/v1/ns/instance/beat?$QUERY" || true)"
  case "$answer" in
    *'"code":10200'*) ;;
    *) register || true ;;
  esac
done
