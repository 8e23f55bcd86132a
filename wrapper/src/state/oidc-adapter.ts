// oidc-provider persistence adapter over a StateStore. Pass the class returned by
// `adapterFactory(store)` as the provider's `adapter` option: oidc-provider constructs one instance
// per model name ("AuthorizationCode", "RefreshToken", "Session", ...).

import type { ConsumeResult, StatePayload, StateRecord, StateStore } from './store.js';

/** What oidc-provider hands to `upsert` and expects back from `find*`. */
export type AdapterPayload = StatePayload & {
  grantId?: string;
  userCode?: string;
  uid?: string;
  /** Epoch seconds at which the record was consumed. */
  consumed?: number;
};

export interface OidcAdapter {
  readonly name: string;
  upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void>;
  find(id: string): Promise<AdapterPayload | undefined>;
  findByUserCode(userCode: string): Promise<AdapterPayload | undefined>;
  findByUid(uid: string): Promise<AdapterPayload | undefined>;
  consume(id: string): Promise<void>;
  destroy(id: string): Promise<void>;
  revokeByGrantId(grantId: string): Promise<void>;
}

export type OidcAdapterClass = new (name: string) => OidcAdapter;

/**
 * Thrown by `consume` when the caller lost the single-use race (or the record vanished meanwhile).
 * Shaped like oidc-provider's own errors (message = error code, `expose`, `statusCode`) so the
 * token endpoint answers 400 invalid_grant instead of 500 server_error.
 */
export class SingleUseViolationError extends Error {
  readonly error = 'invalid_grant';
  readonly error_description: string;
  readonly expose = true;
  readonly status = 400;
  readonly statusCode = 400;
  readonly result: Exclude<ConsumeResult, 'consumed'>;

  constructor(model: string, result: Exclude<ConsumeResult, 'consumed'>) {
    super('invalid_grant');
    this.name = 'SingleUseViolationError';
    this.result = result;
    this.error_description =
      result === 'already_consumed' ? `${model} already consumed` : `${model} not found`;
  }
}

function toPayload(record: StateRecord | undefined): AdapterPayload | undefined {
  if (!record) return undefined;
  const payload: AdapterPayload = { ...record.payload };
  if (record.consumedAt !== null) payload.consumed = Math.floor(record.consumedAt / 1000);
  return payload;
}

export function adapterFactory(store: StateStore): OidcAdapterClass {
  return class StateStoreAdapter implements OidcAdapter {
    readonly name: string;

    constructor(name: string) {
      this.name = name;
    }

    async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
      await store.upsert(this.name, id, payload, expiresIn);
    }

    async find(id: string): Promise<AdapterPayload | undefined> {
      return toPayload(await store.find(this.name, id));
    }

    async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
      return toPayload(await store.findByUserCode(this.name, userCode));
    }

    async findByUid(uid: string): Promise<AdapterPayload | undefined> {
      return toPayload(await store.findByUid(this.name, uid));
    }

    /**
     * oidc-provider checks `payload.consumed` after `find` and then calls `consume`; two requests
     * replaying the same code can both pass that check. Only one wins here; the loser's request
     * fails with invalid_grant and, as for a sequential replay, the whole grant is revoked
     * (RFC 6749 section 4.1.2). Tokens the winner saves after that revocation are not caught.
     */
    async consume(id: string): Promise<void> {
      const result = await store.consumeOnce(this.name, id);
      if (result === 'consumed') return;
      if (result === 'already_consumed') {
        const record = await store.find(this.name, id);
        if (record?.grantId) await store.revokeByGrantId(record.grantId);
      }
      throw new SingleUseViolationError(this.name, result);
    }

    async destroy(id: string): Promise<void> {
      await store.destroy(this.name, id);
    }

    /** Deletes the grant's records of every model, not only this adapter's. */
    async revokeByGrantId(grantId: string): Promise<void> {
      await store.revokeByGrantId(grantId);
    }
  };
}
