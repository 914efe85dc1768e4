"""Reading a question form from an untrusted client: streamed size limit, known fields, safe image decoding.

The body is parsed while it streams in and refused (413) as soon as it exceeds the
limit, or at once when its ``Content-Length`` already does, so an oversized upload is
never held in memory. The image part is decoded only after Pillow has identified it
as an allowed format and its declared width x height is within the pixel limit; a
truncated or corrupt file is an error (Pillow's ``LOAD_TRUNCATED_IMAGES`` stays off),
and Pillow's decompression-bomb guard stays on. The server never opens a path or
fetches a URL a client names: the image is the uploaded bytes and nothing else.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any, AsyncIterator

from .config import ServeConfig
from .errors import ApiError

#: Form fields the API accepts; anything else is refused (422) so that a typo is not silently ignored.
FORM_FIELDS = ("image", "question", "k")
#: The question an image-only ``/v1/answer`` request asks (retrieval of an image-only ``/v1/search`` uses no text).
DEFAULT_QUESTION = "What is this?"
#: Room for the form's text fields and multipart framing on top of the image limit.
FORM_OVERHEAD_BYTES = 64 * 1024


@dataclass
class QuestionForm:
    """A parsed request: the question, the decoded RGB image (or ``None``), ``k`` (``None``: the config's)."""

    question: str  # may be empty for an image-only request
    image: Any = None
    image_name: str | None = None
    k: int | None = None


async def _limited(stream: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise too_large(limit)
        yield chunk


def too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"request body exceeds the upload limit of {limit / 1024 / 1024:.1f} MB "
                                      f"(serve.max_upload_mb)")


async def read_form(request: Any, config: ServeConfig) -> dict[str, Any]:
    """The form fields of ``request`` (multipart or urlencoded), size-checked while streaming.

    Returns ``{"question": str?, "k": str?, "image": (filename, bytes)?}``. Unknown fields,
    repeated fields, a second file or a missing/unsupported content type are 4xx errors.
    """
    from starlette.formparsers import FormParser, MultiPartException, MultiPartParser

    limit = config.max_upload_bytes + FORM_OVERHEAD_BYTES
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise ApiError(400, "bad_request", f"invalid Content-Length header {length!r}") from None
        if declared > limit:
            raise too_large(limit)
    content_type = request.headers.get("content-type", "")
    stream = _limited(request.stream(), limit)
    try:
        if content_type.startswith("multipart/form-data"):
            form = await MultiPartParser(request.headers, stream, max_files=1, max_fields=len(FORM_FIELDS),
                                         max_part_size=FORM_OVERHEAD_BYTES).parse()
        elif content_type.startswith("application/x-www-form-urlencoded"):
            form = await FormParser(request.headers, stream, max_fields=len(FORM_FIELDS),
                                    max_part_size=FORM_OVERHEAD_BYTES).parse()
        else:
            raise ApiError(415, "unsupported_media_type",
                           "send the question as multipart/form-data (fields: image, question, k)")
    except MultiPartException as exc:
        raise ApiError(422, "bad_form", f"malformed form: {exc.message}") from None
    try:
        fields: dict[str, Any] = {}
        for name, value in form.multi_items():
            if name not in FORM_FIELDS:
                raise ApiError(422, "unknown_field", f"unknown form field {name!r} (known: {', '.join(FORM_FIELDS)})")
            if name in fields:
                raise ApiError(422, "repeated_field", f"form field {name!r} given more than once")
            if name == "image":
                if isinstance(value, str):
                    raise ApiError(422, "bad_image_field", "the 'image' field must be a file part (the photo's bytes)")
                data = await value.read()
                fields[name] = (value.filename or "", data)
            else:
                if not isinstance(value, str):
                    raise ApiError(422, "bad_field", f"form field {name!r} must be text, not a file")
                fields[name] = value
        return fields
    finally:
        await form.close()


def parse_question_form(fields: dict[str, Any], config: ServeConfig) -> QuestionForm:
    """Check the text fields and decode the image of a :func:`read_form` result."""
    question = (fields.get("question") or "").strip()
    image_part = fields.get("image")
    if image_part is not None and not image_part[1]:
        image_part = None  # an empty file input: no image
    if not question and image_part is None:
        raise ApiError(422, "missing_input", "send a 'question' field, an 'image' file, or both")
    if len(question) > config.max_question_chars:
        raise ApiError(422, "question_too_long", f"the question has {len(question)} characters; the limit is "
                                                 f"{config.max_question_chars} (serve.max_question_chars)")
    k = None
    if fields.get("k") not in (None, ""):
        try:
            k = int(fields["k"])
        except ValueError:
            raise ApiError(422, "bad_k", f"'k' must be an integer, got {fields['k']!r}") from None
        if not 0 <= k <= config.max_k:
            raise ApiError(422, "bad_k", f"'k' must be between 0 and {config.max_k} (serve.max_k), got {k}")
    image = name = None
    if image_part is not None:
        name, data = image_part
        image = decode_image(data, config)
    return QuestionForm(question=question, image=image, image_name=_safe_name(name), k=k)


def _safe_name(name: str | None) -> str | None:
    """The client's file name, for echoing back only (never used as a path)."""
    if not name:
        return None
    return "".join(c for c in name.replace("\\", "/").rsplit("/", 1)[-1] if c.isprintable())[:200] or None


def decode_image(data: bytes, config: ServeConfig) -> Any:
    """An RGB PIL image from uploaded bytes, or an :class:`ApiError` saying why not.

    415: not an image / not an allowed type; 413: more pixels than ``max_pixels`` (or a
    decompression bomb by Pillow's own guard); 422: truncated or corrupt.
    """
    from PIL import Image, UnidentifiedImageError

    from ret2vqa.images import load_image

    allowed = ", ".join(config.image_types)
    try:
        with warnings.catch_warnings():
            # Pillow warns (and only warns) below twice its bomb limit: treat the warning as the error it is.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[t.upper() for t in config.image_types])
            width, height = img.size
            if width * height > config.max_pixels:
                raise ApiError(413, "too_many_pixels", f"the image is {width}x{height} = {width * height} pixels; "
                                                       f"the limit is {config.max_pixels} (serve.max_pixels)")
            img.load()
            return load_image(img)
    except ApiError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ApiError(413, "too_many_pixels", f"refused as a decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise ApiError(415, "unsupported_image", f"the upload is not an image of an accepted type ({allowed})") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data (Pillow raises these)
        raise ApiError(422, "corrupt_image", f"the image cannot be decoded (truncated or corrupt): {exc}") from None
