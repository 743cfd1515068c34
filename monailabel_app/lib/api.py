"""What MONAI Label 0.8.5's server lacks, added to its FastAPI app when ours starts (verified against 0.8.5):

* ``POST /infer/{model}`` answered in a worker thread: MONAI Label's own endpoint is ``async`` and runs the whole
  inference on the event loop, so one click blocked every other request, ``/info/`` included;
* bad infer requests as 4xx JSON (``{"detail": reason}``) instead of a 500 in plain text: malformed ``params``
  (400), an unknown model or image (404); an image id must name an image of the datastore: MONAI Label would read
  any server path given as the id;
* ``MONAILabelException`` and unexpected errors of every endpoint as JSON, the server serving on;
* listening on 127.0.0.1 unless ``--host`` was given (``monailabel start_server`` defaults to 0.0.0.0).
"""

from __future__ import annotations

import gc
import json
import logging
import sys
from typing import TYPE_CHECKING

import uvicorn
from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse
from monailabel.config import settings
from monailabel.endpoints.infer import ResultType, run_inference
from monailabel.endpoints.user.auth import RBAC, User
from monailabel.interfaces.exception import (
    ImageNotFoundException,
    LabelNotFoundException,
    MONAILabelError,
    MONAILabelException,
)

from lib.datastore import NAME

if TYPE_CHECKING:
    from main import MedPCLIPApp

__all__ = ["bind_loopback_by_default", "install_api_guards"]

logger = logging.getLogger(__name__)


def install_api_guards(api: FastAPI, app: MedPCLIPApp) -> None:
    """Put our ``/infer/{model}`` in front of MONAI Label's and add the JSON exception handlers."""
    router = APIRouter()

    @router.post("/infer/{model}", summary="Run inference (MedP-CLIP: in a worker thread, 4xx JSON on bad input)")
    def infer(  # a plain def: FastAPI runs it in its thread pool, off the event loop
        background_tasks: BackgroundTasks,
        model: str,
        image: str = "",
        session_id: str = "",
        params: str = Form("{}"),
        file: UploadFile = File(None),
        label: UploadFile = File(None),
        output: ResultType | None = None,
        user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER)),
    ) -> object:
        models = app.model_names()
        if model not in models:
            raise HTTPException(404, f"unknown model '{model}'; this server has {', '.join(sorted(models))}.")
        try:
            parsed = json.loads(params) if params else {}
        except json.JSONDecodeError as err:
            raise HTTPException(400, f"params is not valid JSON ({err.msg} at position {err.pos}).") from err
        if not isinstance(parsed, dict):
            raise HTTPException(400, f"params should be a JSON object, got {type(parsed).__name__}.")
        if not file and not session_id:
            _check_image_id(app, image)
        return run_inference(background_tasks, model, image, session_id, params, file, label, output)

    api.include_router(router, prefix=settings.MONAI_LABEL_API_STR)
    ours = api.router.routes[-len(router.routes) :]
    del api.router.routes[-len(router.routes) :]
    api.router.routes[:0] = ours  # routes match in order: ours first
    api.openapi_schema = None

    api.add_exception_handler(MONAILabelException, _monailabel_error)
    api.add_exception_handler(Exception, _unexpected_error)
    api.middleware_stack = None  # Starlette built it at start-up; rebuilt with the handlers on the next request


def bind_loopback_by_default() -> None:
    """Make uvicorn listen on 127.0.0.1 when ``monailabel start_server`` was not given ``--host``.

    The app starts inside uvicorn's start-up, before uvicorn opens its socket from ``Config.host``, so setting
    the host here still takes effect; ``--host 0.0.0.0`` given explicitly is respected.
    """
    if any(arg in ("-i", "--host") or arg.startswith("--host=") for arg in sys.argv):
        return
    for obj in gc.get_objects():
        if isinstance(obj, uvicorn.Config) and obj.host == "0.0.0.0":
            obj.host = "127.0.0.1"
            logger.info("MedP-CLIP: listening on 127.0.0.1 (pass --host to choose another address)")


def _check_image_id(app: MedPCLIPApp, image: str) -> None:
    if not image:
        raise HTTPException(400, "no image: give the id of an image in the datastore, or upload a file.")
    if not NAME.fullmatch(image):
        raise HTTPException(404, f"unknown image id {image[:80]!r}: ids name images of the datastore, not paths.")
    try:
        uri = app.datastore().get_image_uri(image)
    except Exception as err:  # e.g. a DICOMweb series that does not exist
        raise HTTPException(404, f"unknown image '{image}' ({type(err).__name__}).") from err
    if not uri:
        raise HTTPException(404, f"unknown image '{image}': not in this server's datastore.")


async def _monailabel_error(request: Request, err: MONAILabelException) -> JSONResponse:
    if isinstance(err, ImageNotFoundException | LabelNotFoundException):
        status = 404
    else:
        status = 400 if err.error == MONAILabelError.INVALID_INPUT else 500
    return JSONResponse({"detail": err.msg}, status_code=status)


async def _unexpected_error(request: Request, err: Exception) -> JSONResponse:
    logger.exception("unexpected error in %s", request.url.path)
    return JSONResponse({"detail": f"internal error ({type(err).__name__}); see the server log."}, status_code=500)
