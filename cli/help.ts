/**
 * `tp --help` without loading any command (or commander): the layout of commander's own help, so it reads the same
 * as `tp CMD --help`, which commander prints.
 */

const WIDTH = 80;

export interface HelpEntry {
  term: string;
  summary: string;
}

/** The root help: usage, description, options and commands, wrapped at 80 columns. */
export function rootHelp(description: string, options: HelpEntry[], commands: HelpEntry[]): string {
  const termWidth = Math.max(...[...options, ...commands].map((e) => e.term.length));
  const list = (entries: HelpEntry[]) =>
    entries.map((e) => {
      const lead = `  ${e.term.padEnd(termWidth)}  `;
      return lead + wrap(e.summary, WIDTH - lead.length).join(`\n${" ".repeat(lead.length)}`);
    }).join("\n");
  return [
    "Usage: tp [options] [command]",
    "",
    wrap(description, WIDTH).join("\n"),
    "",
    "Options:",
    list(options),
    "",
    "Commands:",
    list(commands),
    "",
  ].join("\n");
}

/** Splits text into lines of at most `width` characters at spaces (a longer word gets a line of its own). */
export function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}
