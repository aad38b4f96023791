"""What Together's own SDK asks besides the published jobs API.

Its ``files.upload`` does not post the file: it asks ``POST /files`` for an upload URL
(a 302 with ``Location`` and ``X-Together-File-Id``), PUTs the bytes there, then calls
``POST /files/{id}/preprocess``. Its ``fine_tuning.create`` first reads the model's limits
(``GET /fine-tunes/models/limits``) and a price estimate (``POST /fine-tunes/estimate-price``).
The backend answers each, over the same ``/v1`` files and jobs.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

UPLOAD_PATH = "/files/_upload/"


def limits(model: str) -> dict[str, Any]:
    """The limits of a model the backend fine-tunes (its trainers take these ranges)."""
    batch = {"max_batch_size": 256, "max_batch_size_dpo": 256, "min_batch_size": 1}
    return {
        "model_name": model,
        "default_gradient_accumulation_steps": 1,
        "full_training": batch,
        "lora_training": {
            **batch,
            "default_rank": 8,
            "max_rank": 64,
            "target_modules": ["all-linear"],
        },
        "max_learning_rate": 1.0,
        "min_learning_rate": 1e-8,
        "max_num_checkpoints": 10,
        "max_num_epochs": 50,
        "max_num_evals": 10,
        "max_seq_length_sft": 8192,
        "max_seq_length_dpo": 8192,
        "min_max_seq_length": 1,
        "merge_output_lora": False,
        "supports_full_training": True,
        "supports_reasoning": False,
        "supports_tools": False,
        "supports_vision": False,
    }


# Nothing is billed here: no estimate, and nothing stops a job.
PRICE = {"estimation_available": False, "allowed_to_proceed": True, "estimated_total_price": 0}


@dataclass
class Upload:
    purpose: str
    file_name: str
    content: bytes | None = None


@dataclass
class Uploads:
    """Uploads announced by ``POST /files`` whose bytes have not all arrived yet."""

    pending: dict[str, Upload] = field(default_factory=dict)

    def announce(self, purpose: str, file_name: str) -> str:
        token = "upload-" + secrets.token_hex(12)
        self.pending[token] = Upload(purpose, file_name)
        return token

    def receive(self, token: str, content: bytes) -> bool:
        upload = self.pending.get(token)
        if upload is None:
            return False
        upload.content = content
        return True

    def complete(self, token: str) -> Upload | None:
        """The upload whose bytes arrived, forgotten once taken."""
        upload = self.pending.get(token)
        if upload is None or upload.content is None:
            return None
        return self.pending.pop(token)


def multipart(upload: Upload) -> tuple[bytes, str]:
    """The ``/v1/files`` request body for a completed upload, and its content type."""
    boundary = "steprun-" + secrets.token_hex(8)
    name = upload.file_name.replace('"', "")
    assert upload.content is not None
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n'
            f"{upload.purpose}\r\n"
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + upload.content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


__all__ = ["PRICE", "UPLOAD_PATH", "Upload", "Uploads", "limits", "multipart"]
