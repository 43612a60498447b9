#!/bin/sh
# Registers the demo application ECHO-EUREKA in Eureka with one instance at 127.0.0.1:18081: echo-a, in
# Envoy's network namespace. Eureka leases last 90 s without renewal, so this renews every 30 s, as a
# Eureka client does, and registers again when the server answers 404 (lease gone).
set -eu
EUREKA="${EUREKA:-http://eureka:8761/eureka}"
ID="127.0.0.1:echo-eureka:18081"

register() {
  curl -fsS -X POST "$EUREKA/apps/ECHO-EUREKA" -H 'Content-Type: application/json' -d '{"instance": {
    "instanceId": "'"$ID"'",
    "hostName": "127.0.0.1",
    "app": "ECHO-EUREKA",
    "ipAddr": "127.0.0.1",
    "status": "UP",
    "port": {"$": 18081, "@enabled": "true"},
    "securePort": {"$": 443, "@enabled": "false"},
    "vipAddress": "echo-eureka",
    "secureVipAddress": "echo-eureka",
    "metadata": {"protocol": "http"},
    "dataCenterInfo": {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"}
  }}'
  echo "registered ECHO-EUREKA $ID"
}

until curl -fsS -H 'Accept: application/json' "$EUREKA/apps" >/dev/null 2>&1; do sleep 2; done
register
while sleep 30; do
  code="$(curl -sS -o /dev/null -w '%{http_code}' -X PUT "$EUREKA/apps/ECHO-EUREKA/$ID?status=UP" || true)"
  [ "$code" = 200 ] || register || true
done
