"""External services, one module each, and the circuit breakers in front of them.

Each module wraps one library (openai, aiobotocore, aiosmtplib, twilio, aiohttp for webhooks)
and translates its failures into app.errors with `raise ... from exc`, so the retry policy
never sees a library's exception. `messages.py` holds what a channel can send.
"""
