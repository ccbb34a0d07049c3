"""Reading QR codes from uploaded pictures (clients/qrimage.py): what zbarimg is
given is only what Pillow re-drew, and what is no picture, a pixel bomb, or a
missing program is refused with the error tree's codes."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
import segno
from PIL import Image

from clients.qrimage import QrReader
from engine.errors import InvalidArgument, Unavailable


def png_of(img: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def qr_png(text: str) -> bytes:
    out = io.BytesIO()
    segno.make_qr(text, error="m").save(out, kind="png", scale=6)
    return out.getvalue()


async def test_reads_every_qr_and_none() -> None:
    reader = QrReader()
    assert await reader.read(qr_png("EB1:a:b")) == ["EB1:a:b"]
    two = Image.new("L", (800, 400), 255)
    two.paste(Image.open(io.BytesIO(qr_png("first"))), (20, 20))
    two.paste(Image.open(io.BytesIO(qr_png("second"))), (420, 20))
    assert sorted(await reader.read(png_of(two))) == ["first", "second"]
    assert await reader.read(png_of(Image.new("RGB", (300, 300), "white"))) == []


async def test_a_photo_turned_by_its_exif_orientation_and_scaled_down() -> None:
    big = Image.open(io.BytesIO(qr_png("EB1:photo"))).convert("RGB").resize((3000, 3000))
    sideways = big.rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": the camera held sideways
    out = io.BytesIO()
    sideways.save(out, format="JPEG", exif=exif, quality=85)
    assert await QrReader(max_side=1200).read(out.getvalue()) == ["EB1:photo"]


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


async def test_what_is_no_picture_or_too_large_is_refused_unread() -> None:
    reader = QrReader()
    for junk in (b"", b"not a picture", b"%PDF-1.7\n"):
        with pytest.raises(InvalidArgument) as e:
            await reader.read(junk)
        assert e.value.field == "picture"
    # A few bytes that claim 100,000 x 100,000 pixels: refused before decoding.
    with pytest.raises(InvalidArgument, match="too many pixels"):
        await reader.read(_png_header_only(100_000, 100_000))
    with pytest.raises(InvalidArgument, match="TIFF"):
        await reader.read(png_of(Image.new("L", (10, 10)), "TIFF"))


async def test_a_missing_program_is_unavailable() -> None:
    reader = QrReader("/nonexistent/zbarimg")
    assert not reader.available
    with pytest.raises(Unavailable):
        await reader.read(qr_png("x"))
