"""Rewrite annotations (Higress rewrite.go): rewrite-target, use-regex, upstream-vhost (N+H);
rewrite-path and full-path-regex (H only).

rewrite-path wins over rewrite-target. rewrite-target's nginx groups (`$1`) become RE2's (`\\1`).
Regex path matching is switched on by use-regex or full-path-regex, or by a rewrite-target when the
target has capture groups or the path has regex characters (Higress NeedRegexMatch).
"""

from __future__ import annotations

import enum
import re

import msgspec

from xdsbus.model.routes import PathKind, PathMatch, Rewrite
from xdsbus.translate.ingress_annotations.re2 import META_CHARS, quote_meta
from xdsbus.translate.ingress_annotations.reader import AnnotationReader

_NGINX_GROUP = re.compile(r"\$[0-9]")
_HOST = re.compile(r"[^\s/]+")


class RegexMode(enum.StrEnum):
    NONE = ""
    # `<path>.*`
    PREFIX = "prefix"
    # `<path>$`
    FULL = "full"


class RewriteSpec(msgspec.Struct, frozen=True, kw_only=True):
    # RE2 substitution (already converted from nginx `$N`); unused when `path` is set.
    target: str = ""
    use_regex: bool = False
    full_path_regex: bool = False
    # Replacement of the Host header.
    host: str = ""
    # Plain prefix (or whole path) replacement.
    path: str = ""

    def regex_mode(self, path: str) -> RegexMode:
        """Whether the Ingress path `path` is matched as a regex (Higress NeedRegexMatch)."""
        if self.full_path_regex:
            return RegexMode.FULL
        if self.use_regex:
            return RegexMode.PREFIX
        if self.target and not self.path:
            # Higress NeedRegexMatch: a path with a character regexp.QuoteMeta would escape.
            if any(c in META_CHARS for c in path) or any(c in "$\\" for c in self.target):
                return RegexMode.PREFIX
        return RegexMode.NONE

    def for_match(self, match: PathMatch, *, target: bool = True) -> Rewrite | None:
        """The route rewrite for a route matching `match` (None when nothing is rewritten).
        `target=False` leaves rewrite-target out (the default backend: its groups refer to paths)."""
        if self.path:
            rewrite = _rewrite_path(match, self.path)
        elif self.target and target:
            rewrite = _rewrite_target(match, self.target)
        else:
            rewrite = Rewrite()
        if self.host:
            rewrite = msgspec.structs.replace(rewrite, host=self.host)
        return None if rewrite == Rewrite() else rewrite


def _rewrite_path(match: PathMatch, target: str) -> Rewrite:
    if match.kind is not PathKind.PREFIX:
        return Rewrite(path=target)
    if match.value.endswith("/"):
        # Prefix `/`: the matched `/` is replaced, so the rewrite must end with `/` too (Higress).
        return Rewrite(prefix=target if target.endswith("/") else target + "/")
    if target.endswith("/"):
        # `/foo` (Kubernetes prefix: `/foo` or `/foo/...`) → `/bar/`: swallow the separator so that
        # `/foo/x` becomes `/bar/x`, not `/bar//x`.
        return Rewrite(regex=f"^{quote_meta(match.value)}/?", substitution=target)
    return Rewrite(prefix=target)


def _rewrite_target(match: PathMatch, target: str) -> Rewrite:
    if match.kind is PathKind.REGEX:
        return Rewrite(regex=match.value, substitution=target)
    if match.kind is PathKind.EXACT:
        return Rewrite(regex=f"^{quote_meta(match.value)}$", substitution=target)
    if target.endswith("/") and match.value != "/":
        # As for rewrite-path: `/foo` → `/` makes `/foo/x` `/x`, not `//x`.
        return Rewrite(regex=f"^{quote_meta(match.value)}/?", substitution=target)
    return Rewrite(regex=f"^{quote_meta(match.value)}", substitution=target)


def convert_target(target: str) -> str:
    """nginx `$1` groups → RE2 `\\1` (Higress convertToRE2: every `$` once any `$N` is present)."""
    if _NGINX_GROUP.search(target):
        return target.replace("$", "\\")
    return target


def _path(text: str) -> str:
    if not text.startswith("/"):
        raise ValueError("must start with '/'")
    if any(c.isspace() for c in text):
        raise ValueError("must not contain whitespace")
    return text


def _host(text: str) -> str:
    if not _HOST.fullmatch(text):
        raise ValueError("is not a host name")
    return text


def parse_rewrite(r: AnnotationReader) -> RewriteSpec | None:
    if not (
        r.has("rewrite-target")
        or r.has("use-regex")
        or r.has("upstream-vhost")
        or r.has("rewrite-path", higress_only=True)
        or r.has("full-path-regex", higress_only=True)
    ):
        return None
    path = r.value("rewrite-path", _path, higress_only=True) or ""
    target_found = r.get("rewrite-target", str)
    target = ""
    if target_found is not None:
        if path:
            r.add(target_found.key, target_found.raw, "is ignored: higress.io/rewrite-path takes priority")
        else:
            target = convert_target(target_found.value)
    spec = RewriteSpec(
        target=target,
        use_regex=bool(r.boolean("use-regex")),
        full_path_regex=bool(r.boolean("full-path-regex", higress_only=True)),
        host=r.value("upstream-vhost", _host) or "",
        path=path,
    )
    return None if spec == RewriteSpec() else spec
