/**
 * Structured logging: one JSON object per line on stderr, with a level filter.
 * Key material never goes through here; callers pass only names, addresses and counts.
 */

export type LogLevel = "debug" | "info" | "warn" | "error";

const LEVEL_RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export const LOG_LEVELS = Object.keys(LEVEL_RANK) as LogLevel[];

export type LogFields = Record<string, string | number | boolean | bigint | null | undefined>;

export interface LogSink {
  write(line: string): void;
}

export class Logger {
  private readonly minRank: number;

  constructor(
    readonly level: LogLevel = "info",
    private readonly sink: LogSink = process.stderr,
    private readonly context: LogFields = {},
  ) {
    this.minRank = LEVEL_RANK[level];
  }

  /** A logger that adds `fields` to every line, e.g. the component or the peer. */
  child(fields: LogFields): Logger {
    return new Logger(this.level, this.sink, { ...this.context, ...fields });
  }

  enabled(level: LogLevel): boolean {
    return LEVEL_RANK[level] >= this.minRank;
  }

  debug(msg: string, fields?: LogFields): void {
    this.log("debug", msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.log("info", msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.log("warn", msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.log("error", msg, fields);
  }

  log(level: LogLevel, msg: string, fields?: LogFields): void {
    if (LEVEL_RANK[level] < this.minRank) return;
    const record: Record<string, unknown> = {
      time: new Date().toISOString(),
      level,
      msg,
      ...this.context,
      ...fields,
    };
    this.sink.write(JSON.stringify(record, jsonSafe) + "\n");
  }
}

function jsonSafe(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString() : value;
}

/**
 * Lets through at most `burst` lines per `intervalMs` for one kind of event, and reports how
 * many were suppressed in the next line that passes. Hostile traffic must not flood the log.
 */
export class RateLimitedLog {
  private windowStart = 0;
  private passed = 0;
  private suppressed = 0;

  constructor(
    private readonly logger: Logger,
    private readonly level: LogLevel,
    private readonly burst = 5,
    private readonly intervalMs = 10_000,
  ) {}

  log(msg: string, fields?: LogFields, now = Date.now()): void {
    if (now - this.windowStart >= this.intervalMs) {
      this.windowStart = now;
      this.passed = 0;
    }
    if (this.passed >= this.burst) {
      this.suppressed++;
      return;
    }
    this.passed++;
    const extra = this.suppressed > 0 ? { suppressed: this.suppressed } : {};
    this.suppressed = 0;
    this.logger.log(this.level, msg, { ...fields, ...extra });
  }
}
