"""Names and numbers declared once.

QType table: ggml type ids and block geometry for the types dsv4-gguf quantizes, mirrored from the
C++ table in ``csrc/quant/quant.cpp`` (a test checks the two and the ``gguf`` package agree).
"""

from __future__ import annotations

from typing import NamedTuple

from gguf import GGMLQuantizationType


class QTypeInfo(NamedTuple):
    qtype: GGMLQuantizationType
    block_size: int  # elements per block
    type_size: int  # bytes per block
    vec_dot_type: GGMLQuantizationType  # activation format of the type's dot product
    needs_imatrix: bool  # quantize() refuses to run without importance weights


_Q = GGMLQuantizationType

QTYPES: dict[GGMLQuantizationType, QTypeInfo] = {
    info.qtype: info
    for info in (
        QTypeInfo(_Q.F32, 1, 4, _Q.F32, False),
        QTypeInfo(_Q.F16, 1, 2, _Q.F32, False),
        QTypeInfo(_Q.Q4_0, 32, 18, _Q.Q8_0, False),
        QTypeInfo(_Q.Q8_0, 32, 34, _Q.Q8_0, False),
        QTypeInfo(_Q.Q2_K, 256, 84, _Q.Q8_K, False),
        QTypeInfo(_Q.Q3_K, 256, 110, _Q.Q8_K, False),
        QTypeInfo(_Q.Q4_K, 256, 144, _Q.Q8_K, False),
        QTypeInfo(_Q.Q5_K, 256, 176, _Q.Q8_K, False),
        QTypeInfo(_Q.Q6_K, 256, 210, _Q.Q8_K, False),
        QTypeInfo(_Q.Q8_K, 256, 292, _Q.Q8_K, False),
        QTypeInfo(_Q.IQ2_XXS, 256, 66, _Q.Q8_K, True),
        QTypeInfo(_Q.IQ4_XS, 256, 136, _Q.Q8_K, False),
        QTypeInfo(_Q.BF16, 1, 2, _Q.F32, False),
        QTypeInfo(_Q.MXFP4, 32, 17, _Q.Q8_0, False),
    )
}

# Storage types (Q8_K is an activation-only format).
WEIGHT_QTYPES: tuple[GGMLQuantizationType, ...] = tuple(t for t in QTYPES if t != _Q.Q8_K)
