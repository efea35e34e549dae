// Dates in command output change with the clock: tests compare text with them masked.
// Every mask keeps the width of what it replaces, so column layouts stay comparable.

const dateTime = /\b\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?\b/g;
const ctime = /\b(?:Sun|Mon|Tue|Wed|Thu|Fri|Sat) (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d{2}:\d{2}:\d{2} \d{4}\b/g;

/** `2026-11-23 16:27[:02]` → `YYYY-MM-DD HH:MM[:SS]`; `Mon Nov 23 16:27:02 2026` → `Www Mmm DD HH:MM:SS YYYY`. */
export function maskDates(text: string): string {
  return text
    .replace(ctime, 'Www Mmm DD HH:MM:SS YYYY')
    .replace(dateTime, (_all, seconds: string | undefined) => (seconds ? 'YYYY-MM-DD HH:MM:SS' : 'YYYY-MM-DD HH:MM'));
}

/** `vdi list -r`: the 7th field is the creation time in seconds since the epoch. */
export function maskRawVdiList(text: string): string {
  return text
    .split('\n')
    .map((line) => {
      if (line === '') return line;
      const fields = line.split(' ');
      if (fields.length >= 7 && /^\d+$/.test(fields[6]!)) fields[6] = 'TIME';
      return fields.join(' ');
    })
    .join('\n');
}

/** `vdi graph` labels: `Date: 2026-11-23` and `Time: 16:27:02`, each padded to 10. */
export function maskGraphDates(text: string): string {
  return text.replace(/Date: +\d{4}-\d{2}-\d{2}/g, 'Date: YYYY-MM-DD').replace(/Time: +\d{2}:\d{2}:\d{2}/g, 'Time:   HH:MM:SS');
}
