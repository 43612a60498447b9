#!/bin/sh
# Registers the demo service echo-consul in the Consul dev agent (datacenter dc1) with one instance at
# 127.0.0.1:18082: echo-b, in Envoy's network namespace. No health check is attached, so Consul reports
# it passing; agent services stay until deregistered, so this runs once.
set -eu
CONSUL="${CONSUL:-http://consul:8500}"

until curl -fsS "$CONSUL/v1/status/leader" | grep -q ':'; do sleep 1; done
curl -fsS -X PUT "$CONSUL/v1/agent/service/register" -H 'Content-Type: application/json' -d '{
  "ID": "echo-consul-1",
  "Name": "echo-consul",
  "Address": "127.0.0.1",
  "Port": 18082,
  "Meta": {"protocol": "http"}
}'
echo "registered echo-consul 127.0.0.1:18082"
