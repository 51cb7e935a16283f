"""Request rate limits on the `limits` library, counted in a store every API process shares."""

from ttelgo.ratelimit.limiter import Policy, RateLimiter, Verdict, build_rate_limiter

__all__ = ["Policy", "RateLimiter", "Verdict", "build_rate_limiter"]
