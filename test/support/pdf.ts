import { getDocument } from 'pdfjs-dist/legacy/build/pdf.mjs';

/**
 * The text of a PDF as a reader extracts it (Mozilla's PDF.js, through each font's ToUnicode map):
 * one entry per text run, in page order. The fonts are never rendered (no canvas, no system fonts).
 */
export async function pdfText(pdf: Buffer | Uint8Array): Promise<{ pages: number; runs: string[] }> {
  const doc = await getDocument({
    data: new Uint8Array(pdf),
    useSystemFonts: false,
    disableFontFace: true,
    isEvalSupported: false,
    verbosity: 0,
  }).promise;
  try {
    const runs: string[] = [];
    for (let n = 1; n <= doc.numPages; n++) {
      const page = await doc.getPage(n);
      const content = await page.getTextContent();
      for (const item of content.items) if ('str' in item && item.str.trim() !== '') runs.push(item.str);
    }
    return { pages: doc.numPages, runs };
  } finally {
    await doc.destroy();
  }
}

/**
 * Spaces as a PDF's text gives them back: DejaVu Sans draws the no-break spaces Intl puts in
 * amounts ("109,00\u00a0kr") and the thin spaces of date ranges with its space glyph, so a reader
 * extracts a plain space. Expected strings are compared through this.
 */
export const plainSpaces = (s: string): string => s.replace(/[\u00a0\u202f\u2009]/g, ' ');
