"""The monthly review (issue 18): the report, its sign-off, the evidence pack and the monthly close."""
