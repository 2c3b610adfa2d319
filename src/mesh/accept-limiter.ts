/**
 * Weave's inbound accept limit (spec 1.6): a token bucket of 20, refilled one per 50 ms. It also
 * makes online password guessing slow.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly capacity = 20,
    private readonly refillMs = 50,
    now = Date.now(),
  ) {
    this.tokens = capacity;
    this.last = now;
  }

  take(now = Date.now()): boolean {
    const refill = Math.floor((now - this.last) / this.refillMs);
    if (refill > 0) {
      this.tokens = Math.min(this.capacity, this.tokens + refill);
      this.last += refill * this.refillMs;
    }
    if (this.tokens === 0) return false;
    this.tokens--;
    return true;
  }
}
