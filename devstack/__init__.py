"""The embedded development stack behind ``make run``: launcher (``devstack.run``) and SMTP sink."""
