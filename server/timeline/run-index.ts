import type { Cluster } from 'ioredis';
import type Redis from 'ioredis';

/** One index entry a sweep found due: the session, and its due time as stored (to drop it only if unchanged). */
export interface DueRun {
  sessionId: string;
  due: string;
}

/**
 * The deployment-wide index of running runs, read by every instance's lease sweep: sorted sets
 * scored by when each run's lease ends, spread over `buckets` keys (`timeline:running:{b<n>}`),
 * each its own hash slot, so on a cluster no single key or node sees every run. A session's
 * bucket is a stable hash of its id, the same on every instance.
 *
 * It is kept a superset of the running runs: an entry is added before its run is claimed (and
 * again on each renewal, moving its due time), and dropped only once the session's own keys
 * say it finished or is gone. A crash between two steps leaves at most an extra entry, which a
 * sweep drops; never a running run no sweep finds. The scripts are in redis-scripts.ts.
 */
export class RunIndex {
  readonly keys: string[];

  constructor(
    private readonly redis: Redis | Cluster,
    private readonly prefix: string,
    buckets: number,
  ) {
    this.keys = Array.from({ length: buckets }, (_, n) => bucketKey(prefix, n));
  }

  /** The bucket key of a session. */
  bucketOf(sessionId: string): string {
    return runIndexBucket(this.prefix, this.keys.length, sessionId);
  }

  /**
   * Adds the run, due at the end of a lease starting now (the bucket node's clock); moves its
   * due time if it is there already, unless `onlyNew` (a claim, which may lose to another).
   */
  async add(sessionId: string, leaseMs: number, { onlyNew = false } = {}): Promise<void> {
    await this.redis.timelineIndexAdd(this.bucketOf(sessionId), leaseMs, sessionId, onlyNew ? '1' : '0');
  }

  /** Drops a finished run. */
  async remove(sessionId: string): Promise<void> {
    await this.redis.zrem(this.bucketOf(sessionId), sessionId);
  }

  /** At most `limit` entries of `bucket` whose due time has passed. */
  async due(bucket: string, limit: number): Promise<DueRun[]> {
    const flat = await this.redis.timelineIndexDue(bucket, limit);
    const runs: DueRun[] = [];
    for (let i = 0; i < flat.length; i += 2) runs.push({ sessionId: flat[i], due: flat[i + 1] });
    return runs;
  }

  /** Drops an entry a sweep found due, unless it was added again since (a restored run). */
  async drop(sessionId: string, due: string): Promise<void> {
    await this.redis.timelineIndexDrop(this.bucketOf(sessionId), sessionId, due);
  }
}

function bucketKey(prefix: string, n: number): string {
  return `${prefix}running:{b${n}}`;
}

/** The key of the index bucket a session belongs to, out of `buckets`. */
export function runIndexBucket(prefix: string, buckets: number, sessionId: string): string {
  return bucketKey(prefix, fnv1a(sessionId) % buckets);
}

/** 32-bit FNV-1a: a small, stable spread of session ids over the buckets. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}
