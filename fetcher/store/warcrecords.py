"""One URL's exchanges → WARC/1.1 records (warcio's), each one gzip member; no files here.

Per exchange that got an answer: a `request` record (the head as sent, credentials masked
unless --warc-secrets) and a `response` record (status line, headers and body as received:
Content-Encoding kept, chunked framing taken off and the head saying so), tied by
WARC-Concurrent-To. On --refresh, the final answer becomes a `revisit` record when the earlier
capture still holds (a 304: server-not-modified; a payload of the same digest:
identical-payload-digest), pointing at that capture.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from warcio.recordbuilder import RecordBuilder
from warcio.statusandheaders import StatusAndHeadersParser
from warcio.timeutils import datetime_to_iso_date, iso_date_to_timestamp
from warcio.warcwriter import WARCWriter

from fetcher.capture import Exchange
from fetcher.records import Capture

WARC_VERSION = "1.1"
PROFILE = "http://netpreserve.org/warc/1.1/revisit/"
NOT_MODIFIED = PROFILE + "server-not-modified"
SAME_DIGEST = PROFILE + "identical-payload-digest"
SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie")
# each record its own gzip member. On 20 kB of text: level 1 takes 0.23 ms, 6 1.0 ms, 9
# (warcio's) 3.0 ms, for 4.2, 3.1 and 3.1 kB: a run's archive is written fast and may be
# repacked for keeps (`warcio recompress` writes level 9)
GZIP_LEVEL = 1
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
_builder = RecordBuilder(warc_version=WARC_VERSION)
_parser = StatusAndHeadersParser([], verify=False)


@dataclass(frozen=True)
class Written:
    """A record as gzip bytes, and its line in the CDXJ index (None: not indexed)."""

    data: bytes
    cdx: dict[str, Any] | None


def target_uri(url: str, secrets: bool) -> str:
    """The URL as requested, without user:password (the request carried them in its
    Authorization header, masked too) unless --warc-secrets."""
    return url if secrets else _USERINFO.sub(r"\1", url, count=1)


def payload_digest(body: bytes | bytearray) -> str:
    """sha1, base32, as WARC tools write and compare it."""
    return "sha1:" + base64.b32encode(hashlib.sha1(body).digest()).decode("ascii")


def url_records(
    exchanges: Sequence[Exchange], previous: Capture | None, secrets: bool
) -> tuple[list[Written], Capture | None]:
    """The records of one URL's exchanges, in order, and the capture its payload now has
    (the earlier one if the final answer was a revisit; None if there is no whole 2xx)."""
    written: list[Written] = []
    capture = None
    answered = [e for e in exchanges if e.answered]
    for number, exchange in enumerate(answered):
        final = number == len(answered) - 1
        records, capture = _exchange(exchange, previous if final else None, secrets, final)
        written += records
    return written, capture


def _exchange(
    exchange: Exchange, previous: Capture | None, secrets: bool, final: bool
) -> tuple[list[Written], Capture | None]:
    """A response (or revisit) record and its request record."""
    uri = target_uri(exchange.url, secrets)
    date = datetime_to_iso_date(exchange.date.replace(tzinfo=None), use_micros=True)
    common = {"WARC-Date": date}
    if exchange.ip:
        common["WARC-IP-Address"] = exchange.ip
    digest = payload_digest(exchange.body)
    revisit = _revisit_profile(exchange, previous, digest)
    if revisit is not None and previous is not None:
        answer = _revisit(exchange, uri, common, previous, revisit)
        capture: Capture | None = previous
    else:
        answer = _response(exchange, uri, {**common, "WARC-Payload-Digest": digest})
        whole = exchange.ended and exchange.truncated is None
        capture = None
        if final and whole and 200 <= exchange.status < 300:
            record_id = answer.rec_headers.get_header("WARC-Record-ID")
            capture = Capture(record_id, uri, date, digest)
    request = _request(exchange, uri, common, secrets)
    request.rec_headers.add_header("WARC-Concurrent-To", answer.rec_headers["WARC-Record-ID"])
    return [_gzipped(answer, indexed=True), _gzipped(request, indexed=False)], capture


def _revisit_profile(exchange: Exchange, previous: Capture | None, digest: str) -> str | None:
    if previous is None:
        return None
    if exchange.status == 304:
        return NOT_MODIFIED
    whole = exchange.ended and exchange.truncated is None
    if whole and 200 <= exchange.status < 300 and digest == previous.digest:
        return SAME_DIGEST
    return None


def _response(exchange: Exchange, uri: str, common: dict[str, str]) -> Any:
    head = exchange.response_head()
    headers = dict(common)
    if exchange.truncated or not exchange.ended:
        headers["WARC-Truncated"] = exchange.truncated or "length"
    block = head + bytes(exchange.body)
    return _builder.create_warc_record(
        uri, "response", payload=io.BytesIO(block), length=len(block), warc_headers_dict=headers
    )


def _revisit(
    exchange: Exchange, uri: str, common: dict[str, str], previous: Capture, profile: str
) -> Any:
    """The answer's head alone, pointing at the capture that holds the payload; a 304's
    revisit holds no head at all, so that replay takes the capture's own status and headers
    (pywb replays a revisit's head as it stands: a 304 with no body)."""
    http_headers = None
    if profile == SAME_DIGEST:
        http_headers = _parser.parse(io.BytesIO(exchange.response_head()))
    record = _builder.create_revisit_record(
        uri, previous.digest, previous.uri, previous.date, http_headers, dict(common)
    )
    record.rec_headers.replace_header("WARC-Profile", profile)
    record.rec_headers.add_header("WARC-Refers-To", previous.record_id)
    return record


def _request(exchange: Exchange, uri: str, common: dict[str, str], secrets: bool) -> Any:
    head = bytes(exchange.request) if secrets else mask_secrets(bytes(exchange.request))
    return _builder.create_warc_record(
        uri, "request", payload=io.BytesIO(head), length=len(head), warc_headers_dict=common
    )


def mask_secrets(head: bytes) -> bytes:
    """The request head with the values of Authorization, Proxy-Authorization and Cookie
    replaced by ***."""
    lines = head.split(b"\r\n")
    for number, line in enumerate(lines[1:], start=1):
        name, colon, _ = line.partition(b":")
        if colon and name.strip().lower().decode("latin-1") in SECRET_HEADERS:
            lines[number] = name + b": ***"
    return b"\r\n".join(lines)


def _gzipped(record: Any, indexed: bool) -> Written:
    """The record as one gzip member, and its CDXJ fields if it is indexed."""
    plain = io.BytesIO()
    WARCWriter(plain, gzip=False).write_record(record)
    packer = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    data = packer.compress(plain.getvalue()) + packer.flush()
    return Written(data, cdx_fields(record) if indexed else None)


def cdx_fields(record: Any) -> dict[str, Any] | None:
    """What a CDXJ line says of a response or revisit record, as pywb's indexer (wb-manager)
    writes it (without its place in the file, which the writer adds)."""
    if record.rec_type not in ("response", "revisit"):
        return None
    headers = record.http_headers
    fields: dict[str, Any] = {"url": record.rec_headers.get_header("WARC-Target-URI")}
    if record.rec_type == "revisit":
        fields["mime"] = "warc/revisit"
    elif headers is not None:
        fields["mime"] = (headers.get_header("Content-Type") or "unk").split(";")[0].strip()
    if headers is not None and headers.get_statuscode():
        fields["status"] = headers.get_statuscode()
    digest = record.rec_headers.get_header("WARC-Payload-Digest") or "-"
    fields["digest"] = digest.removeprefix("sha1:")  # as pywb's own indexer writes it
    fields["timestamp"] = iso_date_to_timestamp(record.rec_headers.get_header("WARC-Date"))
    fields["key"] = _surt(fields["url"])  # (here, before the file's lock is taken)
    return fields


def _surt(url: str) -> str:
    """The key pywb looks a URL up by (SURT: `com,example)/path`)."""
    import surt  # (with the warc extra; its import costs 0.2 s, paid only when archiving)

    return str(surt.surt(url))


def cdx_line(fields: dict[str, Any], offset: int, length: int, filename: str) -> str:
    """One line of a CDXJ index: the SURT key, the 14-digit timestamp, the JSON block."""
    block = {k: v for k, v in fields.items() if k not in ("timestamp", "key")}
    block.update(length=str(length), offset=str(offset), filename=filename)
    return f"{fields['key']} {fields['timestamp']} {json.dumps(block, ensure_ascii=False)}"
