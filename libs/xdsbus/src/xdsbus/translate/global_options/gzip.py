"""`gzip`: response compression. Names, ranges and defaults from Higress's
`pkg/ingress/kube/configmap/gzip.go` (validGzip, NewDefaultGzip)."""

from __future__ import annotations

from xdsbus.translate.global_options.model import GzipOptions
from xdsbus.translate.global_options.values import Section

COMPRESSION_LEVELS = (
    "BEST_COMPRESSION",
    "BEST_SPEED",
    *(f"COMPRESSION_LEVEL_{n}" for n in range(1, 10)),
)
COMPRESSION_STRATEGIES = ("DEFAULT_STRATEGY", "FILTERED", "HUFFMAN_ONLY", "RLE", "FIXED")

_UINT32_MAX = 2**32 - 1


def parse_gzip(section: Section) -> GzipOptions:
    """The `gzip` section; each missing or bad key takes Higress's default."""
    d = GzipOptions()
    options = GzipOptions(
        enable=section.boolean("enable", d.enable),
        min_content_length=section.integer("minContentLength", d.min_content_length, 1, _UINT32_MAX),
        content_type=section.strings("contentType", d.content_type),
        disable_on_etag_header=section.boolean("disableOnEtagHeader", d.disable_on_etag_header),
        memory_level=section.integer("memoryLevel", d.memory_level, 1, 9),
        window_bits=section.integer("windowBits", d.window_bits, 9, 15),
        # Envoy's gzip chunk_size is 4096..65536.
        chunk_size=section.integer("chunkSize", d.chunk_size, 4096, 65536),
        compression_level=section.choice("compressionLevel", d.compression_level, COMPRESSION_LEVELS),
        compression_strategy=section.choice(
            "compressionStrategy", d.compression_strategy, COMPRESSION_STRATEGIES
        ),
    )
    section.report_unknown()
    return options
