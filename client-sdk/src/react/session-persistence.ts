/** What survives a page reload: which session the page follows and how far it had read. */
export interface PersistedSession {
  sessionId: string;
  /** The last event (or `done`) the page had shown; `null` before the first one. */
  lastEventId: string | null;
}

/** Where {@link useTimeline} keeps its session across reloads: `sessionStorage` under one key. */
export interface SessionPersistence {
  read(): PersistedSession | null;
  write(session: PersistedSession): void;
  clear(): void;
}

function isPersistedSession(value: unknown): value is PersistedSession {
  const record = value as Partial<PersistedSession> | null;
  return (
    typeof record?.sessionId === 'string' &&
    (record.lastEventId === null || typeof record.lastEventId === 'string')
  );
}

/** Something else wrote the key (or an older version of this SDK): not a session to resume. */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/**
 * `sessionStorage` (per tab, kept across reloads, gone with the tab), or `null` where there is
 * none: on a server, or where the browser refuses storage (blocked cookies throw on access).
 */
function sessionStorageOrNull(): Storage | null {
  try {
    return typeof sessionStorage === 'undefined' ? null : sessionStorage;
  } catch {
    return null;
  }
}

/**
 * The session kept under `key` in `sessionStorage`. Storage that fails (full, blocked) only
 * costs the resume after a reload, never the run: the failure turns persistence off.
 */
export function sessionStoragePersistence(key: string): SessionPersistence {
  let storage = sessionStorageOrNull();
  const attempt = <T>(use: (storage: Storage) => T, fallback: T): T => {
    if (!storage) return fallback;
    try {
      return use(storage);
    } catch {
      storage = null;
      return fallback;
    }
  };
  return {
    read: () => {
      const text = attempt((store) => store.getItem(key), null);
      if (text === null) return null;
      const value = parseJson(text);
      return isPersistedSession(value) ? { sessionId: value.sessionId, lastEventId: value.lastEventId } : null;
    },
    write: (session) => attempt((store) => store.setItem(key, JSON.stringify(session)), undefined),
    clear: () => attempt((store) => store.removeItem(key), undefined),
  };
}

/** The default key: one session per service URL and tab. */
export const defaultPersistKey = (baseUrl: string): string => `@timeline/client:${baseUrl}`;
