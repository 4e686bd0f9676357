"""URL normalisation for URL dedup: two spellings of one address map to one string.

Hand-written because datatrove 0.9 has no URL dedup (nor a URL normaliser); the standard
library's `urllib.parse` does the parsing.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["TRACKING_PARAMS", "normalize_url"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Query parameters that only say how a visitor arrived (analytics / ad click ids), never what
# the page shows. Parameters starting with "utm_" are dropped too.
TRACKING_PARAMS = frozenset(
    {"fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "mc_cid", "mc_eid", "_ga"}
    | {"_gl", "igshid", "ref_src", "spm", "_hsenc", "_hsmi", "mkt_tok", "oly_enc_id"}
)


def normalize_url(url: str | None) -> str | None:
    """Normalise `url`; None when it is empty or not an absolute http(s)/ftp address.

    Rules: scheme and host lower-cased; the scheme's default port (80, 443) dropped; the
    fragment dropped; tracking parameters (`utm_*` and `TRACKING_PARAMS`) dropped and the
    remaining query parameters sorted; an empty path becomes `/` and a trailing `/` is dropped
    from any other path. The path's case and percent-encoding are kept (servers may tell them
    apart), and http and https stay different addresses.
    """
    if not url or not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:  # e.g. a non-numeric port
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "ftp") or not parts.hostname:
        return None
    host = parts.hostname.lower()  # .hostname drops user:password@ and lower-cases
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    path = parts.path or "/"
    if len(path) > 1:
        path = path.rstrip("/") or "/"
    query = sorted(
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not k.lower().startswith("utm_") and k.lower() not in TRACKING_PARAMS
    )
    return urlunsplit((scheme, host, path, urlencode(query), ""))
