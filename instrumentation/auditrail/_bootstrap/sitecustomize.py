"""Loaded by Python at start-up in processes run by `auditrail-instrument` (this folder is on PYTHONPATH)."""

try:
    from auditrail.launcher import bootstrap
except ImportError as _exc:
    # This interpreter cannot import auditrail: the app would run unaudited. The process that
    # auditrail-instrument exec'd does not start; a child run by another interpreter is told so.
    import json as _json
    import os as _os
    import sys as _sys

    try:
        _launch = _json.loads(_os.environ.get("AUDITRAIL_LAUNCH", ""))
    except ValueError:
        _launch = {}
    _launch = _launch if isinstance(_launch, dict) else {}
    _here = _launch.get("pid") == _os.getpid()
    _sys.stderr.write(
        f"auditrail-instrument: {_sys.executable} cannot import auditrail ({_exc}), so this process "
        + ("was not started: it would run unaudited.\n" if _here else "is NOT audited.\n")
        + f"  Install auditrail into that interpreter: {_sys.executable} -m pip install "
        + f"{_launch.get('install', 'auditrail')}\n"
        + (f"  or run the app with the interpreter auditrail is installed in: {_launch['python']}\n"
           if _launch.get("python") else "")
    )
    if _here:
        _sys.stderr.flush()
        _os._exit(2)
else:
    bootstrap()
