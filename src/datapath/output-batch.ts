/** Something with queued output that the data path writes out at the end of an input batch. */
export interface Flushable {
  flush(): void;
}

/**
 * The ports touched during one input batch. Each batch (a TAP read or a UDP receive) ends with
 * one `flush`, so every output is written with one batched syscall per port.
 */
export class OutputBatch {
  private readonly touched: Flushable[] = [];

  touch(target: Flushable): void {
    this.touched.push(target);
  }

  flush(): void {
    const touched = this.touched;
    for (let i = 0; i < touched.length; i++) touched[i]!.flush();
    touched.length = 0;
  }
}
