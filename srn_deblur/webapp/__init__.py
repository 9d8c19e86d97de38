"""The deblurring web app: a page and a JSON/HTTP API around one loaded SRN network.

`python app.py` (configs/app.yaml) serves it; `create_app(ModelService(ckpt))` builds it in
a test or another WSGI server. See docs/webapp.md.
"""

from srn_deblur.webapp.routes import create_app
from srn_deblur.webapp.service import ModelService, ServiceBusyError
from srn_deblur.webapp.uploads import UploadError

__all__ = ["ModelService", "ServiceBusyError", "UploadError", "create_app"]
