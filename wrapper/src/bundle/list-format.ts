// Intl.ListFormat for the appliance's bundle: English lists in plain
// JavaScript, everything else handed to the real one.
//
// Why: the only user is oidc-provider, which builds two English list
// formatters when it is imported (for error texts such as "'openid',
// 'profile', and 'email'"). Creating them makes V8 load ICU's locale data:
// 3.8 MiB of the node binary's pages and 1.2 MiB of malloc'd memory resident
// for the process's life, 5 of the appliance's ~79 MiB idle RSS (measured
// side by side on the same build; README, Benchmarks "Memory"). The npm form
// keeps the real Intl.ListFormat; scripts/build-artifact substitutes this
// class for `Intl.ListFormat` in the bundle (esbuild --inject + --define), so
// no package's file is changed. test/unit/list-format.test.ts holds it to the
// real one's output.

type Options = { type?: string; style?: string; localeMatcher?: string };

const realListFormat = (): typeof Intl.ListFormat => (globalThis.Intl as unknown as Record<string, typeof Intl.ListFormat>)['ListFormat']!;

export class EnglishListFormat {
  readonly #word: string | undefined;
  readonly #real: Intl.ListFormat | undefined;

  constructor(locales?: string | string[], options: Options = {}) {
    const type = options.type ?? 'conjunction';
    const english = locales === 'en' && (options.style ?? 'long') === 'long';
    const word = !english ? undefined : type === 'conjunction' ? 'and' : type === 'disjunction' ? 'or' : undefined;
    if (word) this.#word = word;
    else this.#real = new (realListFormat())(locales, options as Intl.ListFormatOptions);
  }

  format(list: Iterable<string>): string {
    if (this.#real) return this.#real.format(list);
    const items = Array.from(list, (item) => {
      if (typeof item !== 'string') throw new TypeError('Iterable yielded a value that is not a string');
      return item;
    });
    if (items.length <= 2) return items.join(` ${this.#word} `);
    return `${items.slice(0, -1).join(', ')}, ${this.#word} ${items.at(-1)}`;
  }
}
