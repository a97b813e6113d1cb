"""URL → path in the out dir: readable, injective, safe on every file system.

Scheme: ``host[_port]/dir/…/stem~HASH.ext``. HASH is 80 bits of BLAKE2b over the whole URL
(credentials removed), so two URLs never share a file; every file name contains `~` and no
directory name does, so a file never stands where another URL needs a directory. Directory
names may be lossy (sanitised, clipped): they are for people, the hash is for identity.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import mimetypes
import re
from urllib.parse import unquote, urlsplit

from fetcher.urls import canonical, redact

MAX_STEM_BYTES = 200  # + "~" + 16 + ".ext" stays well under the 255-byte name limit
MAX_DIR_BYTES = 120
MAX_DIRS_TOTAL = 2000  # bytes of directories below the host, to stay far from PATH_MAX
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
_EXTENSION = re.compile(r"\.([A-Za-z0-9]{1,8})$")
_SCRIPT_EXTENSIONS = {
    "php", "php3", "php4", "php5", "phtml", "asp", "aspx", "jsp", "jspx", "cgi", "pl", "cfm",
    "do", "action", "py",
}  # fmt: skip  # these URLs' files are named by what they serve, as if they had none
_MIME_TYPES = mimetypes.MimeTypes(filenames=())  # the built-in table alone
# where the table's first choice is an odd one (application/xml → .xsl) or it has none
_PREFERRED = {
    "application/xml": ".xml",
    "text/javascript": ".js",
    "application/xhtml+xml": ".html",
    "image/webp": ".webp",
    "application/gzip": ".gz",
    "image/x-icon": ".ico",
    "font/woff2": ".woff2",
    "font/woff": ".woff",
}


def path_for(url: str, content_type: str | None = None, *, identity: str | None = None) -> str:
    """The out-dir-relative POSIX path where `url` is saved.

    Made from the URL's canonical form (`urls.canonical`: every spelling of one URL gets one
    path; its user:password is no part of it), and from the Content-Type only where the URL
    has no extension of its own, or that of a server script. The hash covers the canonical
    form; the readable part is masked as records are (credentials embedded in a query).
    `identity` is that form, when the caller has it already.
    """
    identity = identity or canonical(url)
    parts = urlsplit(redact(identity))
    segments = parts.path.split("/")
    dirs = [_dir_name(s) for s in segments[1:-1]] if parts.path.startswith("/") else []
    stem, ext = _stem_and_extension(unquote(segments[-1], errors="replace"), content_type)
    if parts.query:
        stem = f"{stem}_{unquote(parts.query, errors='replace')}"
    name = f"{_clip(_safe(stem), MAX_STEM_BYTES)}~{url_hash(identity)}{ext}"
    return "/".join([_host_folder(parts.hostname or "", parts.port), *_limit(dirs), name])


def url_hash(url: str) -> str:
    """16 lowercase base32 characters: 80 bits, no collision in any list that fits a disk."""
    digest = hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=10).digest()
    return base64.b32encode(digest).decode("ascii").lower()


def _host_folder(host: str, port: int | None) -> str:
    with contextlib.suppress(UnicodeError):
        host = host.encode("ascii").decode("idna")  # xn--bcher-kva.de → bücher.de
    folder = _clip(_safe(host.strip("[]")).replace("~", "_"), MAX_DIR_BYTES) or "_"
    return f"{folder}_{port}" if port else folder


def _dir_name(segment: str) -> str:
    name = _clip(_safe(unquote(segment, errors="replace")).replace("~", "_"), MAX_DIR_BYTES)
    return name if name.strip(".") else "_" + name


def _stem_and_extension(last: str, content_type: str | None) -> tuple[str, str]:
    match = _EXTENSION.search(last)
    if not match or match.start() == 0:  # ".env" is a name, not an extension
        return last or "index", extension_for(content_type)
    ext = match.group(1).lower()
    if ext in _SCRIPT_EXTENSIONS:
        return last, extension_for(content_type)
    return last[: match.start()], "." + ext


def extension_for(content_type: str | None) -> str:
    """The file extension for a media type, from Python's built-in table (never the system's
    /etc/mime.types, so names are the same on every machine); `.html` when none is given."""
    media = (content_type or "").partition(";")[0].strip().lower()
    if not media:
        return ".html"
    known = _PREFERRED.get(media) or _MIME_TYPES.guess_extension(media)
    if known:
        return known
    if media.endswith(("+xml", "+json")):  # application/rss+xml, application/ld+json
        return "." + media.rpartition("+")[2]
    return ".txt" if media.startswith("text/") else ".bin"


def _safe(text: str) -> str:
    """No separators, control characters or characters other file systems refuse; not hidden."""
    text = _UNSAFE.sub("_", text).strip()
    return "_" + text[1:] if text.startswith(".") else text


def _clip(text: str, limit: int) -> str:
    return text.encode("utf-8", "surrogatepass")[:limit].decode("utf-8", "ignore")


def _limit(dirs: list[str]) -> list[str]:
    kept, total = [], 0
    for name in dirs:
        total += len(name.encode("utf-8", "surrogatepass")) + 1
        if total > MAX_DIRS_TOTAL:
            break
        kept.append(name)
    return kept
