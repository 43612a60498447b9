"""Higress Ingress annotations: one module per family, `parse_annotations` reads them all.

See docs/higress.md §1 for the families and their semantics; `reader` holds the prefix
resolution (`nginx.ingress.kubernetes.io/` wins over `higress.io/`; "H only" keys read `higress.io/`).
"""

from xdsbus.translate.ingress_annotations.canary import CanarySpec
from xdsbus.translate.ingress_annotations.parse import ParsedAnnotations, parse_annotations
from xdsbus.translate.ingress_annotations.redirect import HttpsRedirect

__all__ = ["CanarySpec", "HttpsRedirect", "ParsedAnnotations", "parse_annotations"]
