"""Dual approval of sensitive actions, the service's side: the store (store.py), the API under
``/v1/approvals`` (api.py) and the ``/approvals`` page (page.py). The app's side is auditrail.approvals."""
