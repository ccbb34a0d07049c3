"""Reading QR codes from pictures (a photo or screenshot of a bill or its notice
slip, uploaded to the verification page): zbarimg from Debian's zbar-tools
(ops/debian-packages.txt), run as a subprocess.

The upload is untrusted. zbarimg reads pictures through ImageMagick, a large
parser, so it never sees the upload: Pillow opens it first (PNG, JPEG, WebP, GIF
or BMP only, a bounded number of pixels), turns it upright by its EXIF
orientation (phone photos), makes it grey and at most ``max_side`` pixels wide,
and zbarimg is given that as a plain PGM on its stdin. Runs are bounded in time
and in number at once, so uploads cannot take the engine's cores.
"""

from __future__ import annotations

import asyncio
import io
import logging
import shutil

from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import InvalidArgument, Unavailable

__all__ = ["FORMATS", "QrReader"]

log = logging.getLogger(__name__)

FORMATS = frozenset({"PNG", "JPEG", "WEBP", "GIF", "BMP"})
# zbarimg's exit status when it read the picture and found no code in it.
_NONE_FOUND = 4


def _normalise(data: bytes, max_pixels: int, max_side: int) -> bytes:
    """The upload as a grey PGM no wider or taller than ``max_side``."""
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        # Pillow's own bound (far above ours) already trips on opening.
        raise InvalidArgument("picture: too many pixels", field="picture") from None
    except (UnidentifiedImageError, OSError):
        raise InvalidArgument("picture: not a picture (PNG or JPEG)", field="picture") from None
    if img.format not in FORMATS:
        raise InvalidArgument(f"picture: {img.format} is not read (PNG or JPEG)", field="picture")
    # Checked before decoding: the header's size is what a bomb lies small about
    # in bytes, not in pixels.
    if img.width * img.height > max_pixels:
        raise InvalidArgument("picture: too many pixels", field="picture")
    try:
        grey = ImageOps.exif_transpose(img).convert("L")
    except (OSError, ValueError, Image.DecompressionBombError):
        raise InvalidArgument("picture: cannot be decoded", field="picture") from None
    grey.thumbnail((max_side, max_side))
    out = io.BytesIO()
    grey.save(out, format="PPM")  # a grey image saves as binary PGM (P5)
    return out.getvalue()


class QrReader:
    """The QR codes' texts in a picture, as zbarimg reads them."""

    def __init__(
        self,
        program: str = "zbarimg",
        *,
        max_pixels: int = 40_000_000,
        max_side: int = 2000,
        timeout_s: float = 10.0,
        at_once: int = 2,
    ) -> None:
        self.program = program
        self.max_pixels = max_pixels
        self.max_side = max_side
        self.timeout_s = timeout_s
        self._slots = asyncio.Semaphore(at_once)

    @property
    def available(self) -> bool:
        return shutil.which(self.program) is not None

    async def read(self, data: bytes) -> list[str]:
        """Every QR code's text found in ``data`` (empty: none). Raises
        InvalidArgument for what is not a readable picture, Unavailable when
        zbarimg is missing, fails or takes too long."""
        async with self._slots:
            pgm = await asyncio.to_thread(_normalise, data, self.max_pixels, self.max_side)
            try:
                proc = await asyncio.create_subprocess_exec(
                    self.program, "--quiet", "--raw", "--nodbus",
                    "-Sdisable", "-Sqrcode.enable", "-",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
            except FileNotFoundError:
                raise Unavailable(f"{self.program} is not installed (zbar-tools)") from None
            try:
                out, err = await asyncio.wait_for(proc.communicate(pgm), self.timeout_s)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise Unavailable("reading the picture took too long", retry_after_s=5) from None
        if proc.returncode == _NONE_FOUND:
            return []
        if proc.returncode != 0:
            log.warning("zbarimg exited %s: %s", proc.returncode, err[:200])
            raise Unavailable("the picture could not be read", retry_after_s=5)
        # --raw: one code's text a line (a QR may hold newlines; ours never do).
        return [line for line in out.decode("utf-8", "replace").splitlines() if line]
