/**
 * The daemon's stages: each brings one thing up (the link, the device, the routes, DNS, the control socket, ...) and
 * says how to take it down. They come up in order, top to bottom; on quit, or when a stage fails partway, what came
 * up goes down in reverse, each teardown once, a teardown that throws reported without stopping the others.
 *
 * The contract for a stage: if it throws, it has taken down what it brought up itself (or brought up nothing), and
 * its error passes on unchanged, so the user reads the stage's own words for what failed.
 */

/** Takes down what one stage brought up. */
export type Teardown = () => void | Promise<void>;

/** A stage that came up: what it gives the stages after it, and how to take it down. */
export interface Up<T> {
  value: T;
  down: Teardown;
}

export class Stages {
  readonly #downs: { name: string; down: Teardown }[] = [];

  /** Brings a stage up and keeps its teardown; returns its value. A stage that throws keeps nothing. */
  async up<T>(name: string, start: () => Up<T> | Promise<Up<T>>): Promise<T> {
    const { value, down } = await start();
    this.#downs.push({ name, down });
    return value;
  }

  /** Keeps a teardown for something already up (a listener added, a hook set). */
  defer(name: string, down: Teardown): void {
    this.#downs.push({ name, down });
  }

  /** The stages up, in the order they came up. */
  get names(): string[] {
    return this.#downs.map((d) => d.name);
  }

  /**
   * Takes every stage down, the last one first, each awaited before the next. A teardown that throws is passed to
   * `failed` and the others still run. Calling it again takes down only what came up since.
   */
  async down(failed: (name: string, error: unknown) => void): Promise<void> {
    for (let d = this.#downs.pop(); d; d = this.#downs.pop()) {
      try {
        await d.down();
      } catch (e) {
        failed(d.name, e);
      }
    }
  }
}
