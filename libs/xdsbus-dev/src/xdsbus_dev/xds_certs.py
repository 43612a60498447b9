"""`python -m xdsbus_dev.xds_certs DIR`: the local xDS PKI (a CA, the edges' server certificate, Envoy's
client certificate; docs/design.md §10) in DIR, unless it is there already. docker-compose.yml runs it
once into a volume, as root, handing each private key (mode 0600) to the user that reads it."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from xdsbus_dev.harness.certs import XdsPki


def main(argv: Sequence[str] | None = None) -> int:
    """Create the files; `--edge-owner`/`--envoy-owner` (uid[:gid]) own the edge's and Envoy's key."""
    parser = argparse.ArgumentParser(prog="python -m xdsbus_dev.xds_certs", description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--edge-name", action="append", default=[], help="another DNS name of the edges")
    parser.add_argument("--edge-owner", help="uid[:gid] of the edge's key and certificate")
    parser.add_argument("--envoy-owner", help="uid[:gid] of Envoy's key and certificate")
    args = parser.parse_args(argv)
    pki = XdsPki(args.directory)
    if pki.exists():
        print(f"xDS certificates in {pki.directory} are kept")
    else:
        pki.create(edge_names=tuple(args.edge_name))
        print(f"xDS certificates created in {pki.directory}")
    for owner, paths in (
        (args.edge_owner, (pki.edge_key, pki.edge_cert)),
        (args.envoy_owner, (pki.envoy_key, pki.envoy_cert)),
    ):
        if owner:
            uid, _, gid = owner.partition(":")
            for path in paths:
                os.chown(path, int(uid), int(gid or uid))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
