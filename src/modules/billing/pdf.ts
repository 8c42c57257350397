import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { FastifyReply } from 'fastify';
import { type Font, create as openFont } from 'fontkit';
import PDFDocument from 'pdfkit';
import { DomainError } from '../../kernel/errors.js';
import { type InvoiceLayout, invoiceLayout, marketCodeOfSeries } from './domain/invoice-document.js';
import type { BillingService } from './service.js';

/**
 * Invoice PDFs (ADR 0021): the text comes from `invoiceLayout` (domain/invoice-document.ts), placed
 * here with PDFKit in DejaVu Sans, embedded as a subset (only the glyphs used, as a TrueType
 * FontFile2), so every reader shows å, ä, ö, ü, ß, €, − and the non-breaking spaces Intl puts in
 * amounts. Rendered on request, from the database as it is: nothing cached, no provider call.
 */

const requireFrom = createRequire(import.meta.url);

interface Fonts {
  regular: Font;
  bold: Font;
}
let fonts: Promise<Fonts> | undefined;

/** The two faces, read and parsed once per process (about 1.5 MB), shared by every document. */
function loadFonts(): Promise<Fonts> {
  fonts ??= (async () => {
    const face = async (file: string): Promise<Font> => {
      const font = openFont(await readFile(requireFrom.resolve(`dejavu-fonts-ttf/ttf/${file}`)));
      if (!('hasGlyphForCodePoint' in font)) throw new Error(`${file} is a font collection`);
      return font;
    };
    const [regular, bold] = await Promise.all([face('DejaVuSans.ttf'), face('DejaVuSans-Bold.ttf')]);
    return { regular, bold };
  })().catch((error: unknown) => {
    fonts = undefined; // a failed read is tried again by the next request
    throw error;
  });
  return fonts;
}

/** Whether every character of `text` has a glyph in `font`. */
const drawable = (font: Font) => (text: string) => {
  for (const ch of text) if (!font.hasGlyphForCodePoint(ch.codePointAt(0)!)) return false;
  return true;
};

/**
 * The PDF of invoice `id`: its number (the file name), and the document. 404 for an unknown
 * invoice, 409 `invoice_not_finalized` for a draft (no number yet). The seller is the invoice's
 * market's as it is now; the customer's name and email are opened through the customers service
 * (null once erased: the PDF says the customer was erased).
 */
export async function invoicePdf(
  billing: BillingService,
  id: string,
): Promise<{ number: string; pdf: Buffer }> {
  const invoice = await billing.getInvoice(id);
  if (invoice.number === null || invoice.series === null || invoice.status === 'draft') {
    throw new DomainError(
      'invoice_not_finalized',
      `Invoice ${invoice.id} is a draft: it has no number, so no PDF yet.`,
      { extra: { invoice: invoice.id } },
    );
  }
  const [market, customer, faces] = await Promise.all([
    billing.catalog.getMarket(marketCodeOfSeries(invoice.series)),
    billing.customers.get(invoice.customer_id),
    loadFonts(),
  ]);
  const layout = invoiceLayout(
    {
      invoice: {
        number: invoice.number,
        status: invoice.status,
        currency: invoice.currency,
        taxRateBps: invoice.tax_rate_bps,
        taxInclusive: invoice.tax_inclusive,
        subtotalMinor: invoice.subtotal_minor,
        taxMinor: invoice.tax_minor,
        totalMinor: invoice.total_minor,
        creditAppliedMinor: invoice.credit_applied_minor,
        creditCreatedMinor: invoice.credit_created_minor,
        amountDueMinor: invoice.amount_due_minor,
        periodStart: invoice.period_start,
        periodEnd: invoice.period_end,
        issuedAt: invoice.finalized_at ?? invoice.created_at,
        paidAt: invoice.paid_at,
        lines: invoice.lines.map((l) => ({
          kind: l.kind,
          description: l.description,
          periodStart: l.period_start,
          periodEnd: l.period_end,
          amountMinor: l.amount_minor,
        })),
        creditNotes: (invoice.creditNotes ?? []).map((c) => ({
          id: c.id,
          amountMinor: c.amount_minor,
          taxMinor: c.tax_minor,
          reason: c.reason,
          createdAt: c.created_at,
        })),
      },
      market: { code: market.code, name: market.name, locale: market.locale, seller: market.seller },
      customer: {
        id: customer.id,
        externalId: customer.externalId,
        name: customer.name,
        email: customer.email,
        erased: customer.erasedAt !== null,
      },
    },
    { covers: drawable(faces.regular) },
  );
  return { number: invoice.number, pdf: await renderPdf(layout, faces) };
}

// A4 in points, and the grid everything is placed on.
const PAGE = { width: 595.28, height: 841.89, margin: 50 };
const CONTENT = PAGE.width - 2 * PAGE.margin;
const COLUMNS = { description: 265, period: 135, amount: CONTENT - 265 - 135 };
const INK = '#1a1a1a';
const MUTED = '#5f6368';
const RULE = '#c8ccd0';
const BOTTOM = PAGE.height - PAGE.margin - 24; // leaves room for the page footer

/** Places the layout on A4 pages; lines that do not fit go on the next page under a repeated header. */
export async function renderPdf(layout: InvoiceLayout, faces: Fonts): Promise<Buffer> {
  const doc = new PDFDocument({
    size: 'A4',
    margin: PAGE.margin,
    bufferPages: true,
    // The first face is the document's default: no standard (non-embedded) font is ever referenced.
    // (PDFKit takes a parsed fontkit font anywhere it takes a font; its types only name a path.)
    font: faces.regular as unknown as string,
    lang: layout.locale,
    displayTitle: true,
    info: {
      Title: `${layout.title} ${layout.number}`,
      Author: layout.seller.name,
      Subject: `${layout.title} ${layout.number}`,
      Creator: 'Reprise',
      Producer: 'Reprise (PDFKit)',
    },
  });
  const chunks: Buffer[] = [];
  doc.on('data', (chunk: Buffer) => chunks.push(chunk));
  const ended = new Promise<void>((resolve, reject) => {
    doc.on('end', resolve);
    doc.on('error', reject);
  });
  doc.registerFont('regular', faces.regular as unknown as PDFKit.Mixins.PDFFontSource);
  doc.registerFont('bold', faces.bold as unknown as PDFKit.Mixins.PDFFontSource);

  const left = PAGE.margin;
  const right = PAGE.width - PAGE.margin;
  let y = PAGE.margin;

  const banner = () => {
    if (!layout.testBanner) return;
    doc.save().rect(0, 0, PAGE.width, 28).fill('#f29900').restore();
    doc
      .font('bold')
      .fontSize(10)
      .fillColor('#ffffff')
      .text(layout.testBanner, left, 9, { width: CONTENT, align: 'center', lineBreak: false });
  };
  banner();
  doc.on('pageAdded', banner);

  // Seller (left) and title with number (right).
  doc
    .font('bold')
    .fontSize(22)
    .fillColor(INK)
    .text(layout.title, left, y, { width: CONTENT, align: 'right' });
  doc
    .font('regular')
    .fontSize(10)
    .fillColor(MUTED)
    .text(layout.number, left, y + 28, {
      width: CONTENT,
      align: 'right',
    });
  doc.font('bold').fontSize(13).fillColor(INK).text(layout.seller.name, left, y, { width: 300 });
  doc
    .font('regular')
    .fontSize(9.5)
    .fillColor(layout.seller.missing ? '#b3261e' : MUTED);
  for (const line of layout.seller.lines) doc.text(line, { width: 300 });
  y = Math.max(doc.y, y + 44) + 24;

  // Bill to (left) and the facts (right).
  const factsX = left + 280;
  doc.font('bold').fontSize(9).fillColor(MUTED).text('BILL TO', left, y, { width: 270 });
  doc.font('regular').fontSize(10).fillColor(INK);
  for (const line of layout.billTo) doc.text(line, { width: 270 });
  const billToEnd = doc.y;
  let factsY = y;
  for (const fact of layout.facts) {
    doc.font('regular').fontSize(9).fillColor(MUTED).text(fact.label, factsX, factsY, { width: 95 });
    doc
      .font('regular')
      .fontSize(10)
      .fillColor(INK)
      .text(fact.value, factsX + 95, factsY, { width: right - factsX - 95 });
    factsY = Math.max(doc.y, factsY + 14) + 2;
  }
  y = Math.max(billToEnd, factsY) + 24;

  // The lines.
  const header = () => {
    doc.font('bold').fontSize(9).fillColor(MUTED);
    doc.text('DESCRIPTION', left, y, { width: COLUMNS.description - 10, lineBreak: false });
    doc.text('PERIOD', left + COLUMNS.description, y, { width: COLUMNS.period - 10, lineBreak: false });
    doc.text('AMOUNT', left + COLUMNS.description + COLUMNS.period, y, {
      width: COLUMNS.amount,
      align: 'right',
      lineBreak: false,
    });
    y += 14;
    doc.moveTo(left, y).lineTo(right, y).lineWidth(0.75).strokeColor(RULE).stroke();
    y += 6;
  };
  const room = (height: number, again?: () => void) => {
    if (y + height <= BOTTOM) return;
    doc.addPage();
    y = PAGE.margin + (layout.testBanner ? 10 : 0);
    again?.();
  };
  header();
  for (const line of layout.lines) {
    doc.font('regular').fontSize(10);
    const height =
      Math.max(
        doc.heightOfString(line.description, { width: COLUMNS.description - 10 }),
        doc.heightOfString(line.period, { width: COLUMNS.period - 10 }),
      ) + 6;
    room(height, header);
    doc.font('regular').fontSize(10).fillColor(INK);
    doc.text(line.description, left, y, { width: COLUMNS.description - 10 });
    doc.fillColor(MUTED).text(line.period, left + COLUMNS.description, y, { width: COLUMNS.period - 10 });
    doc.fillColor(INK).text(line.amount, left + COLUMNS.description + COLUMNS.period, y, {
      width: COLUMNS.amount,
      align: 'right',
    });
    y += height;
  }
  doc.moveTo(left, y).lineTo(right, y).lineWidth(0.75).strokeColor(RULE).stroke();
  y += 10;

  // Totals, right-aligned.
  const labelX = left + 250;
  for (const total of layout.totals) {
    room(18);
    doc
      .font(total.strong ? 'bold' : 'regular')
      .fontSize(10)
      .fillColor(INK);
    doc.text(total.label, labelX, y, { width: 150 });
    doc.text(total.value, labelX + 150, y, { width: right - labelX - 150, align: 'right' });
    y = Math.max(doc.y, y + 14) + 3;
  }

  if (layout.creditNotes.length > 0) {
    y += 14;
    room(32);
    doc.font('bold').fontSize(9).fillColor(MUTED).text('CREDIT NOTES', left, y, { width: CONTENT });
    y = doc.y + 4;
    for (const note of layout.creditNotes) {
      room(16);
      doc.font('regular').fontSize(9.5).fillColor(INK);
      doc.text(note.date, left, y, { width: 90 });
      doc.text(note.text, left + 90, y, { width: CONTENT - 90 - 110 });
      const end = doc.y;
      doc.text(note.amount, right - 110, y, { width: 110, align: 'right' });
      y = Math.max(end, doc.y) + 3;
    }
  }

  y += 20;
  room(14 * layout.notes.length);
  doc.font('regular').fontSize(8.5).fillColor(MUTED);
  for (const note of layout.notes) {
    doc.text(note, left, y, { width: CONTENT });
    y = doc.y;
  }

  // Page footers, now that the page count is known.
  const range = doc.bufferedPageRange();
  for (let i = 0; i < range.count; i++) {
    doc.switchToPage(range.start + i);
    // Text below the bottom margin would make PDFKit start a new page: the footer sits in it.
    doc.page.margins.bottom = 0;
    doc
      .font('regular')
      .fontSize(8)
      .fillColor(MUTED)
      .text(`${layout.number} · ${i + 1} / ${range.count}`, left, PAGE.height - PAGE.margin + 6, {
        width: CONTENT,
        align: 'right',
        lineBreak: false,
      });
  }
  doc.end();
  await ended;
  return Buffer.concat(chunks);
}

/** Sends an invoice PDF as an attachment named by its number ([A-Z0-9-]: safe in the quoted filename). */
export function sendInvoicePdf(reply: FastifyReply, doc: { number: string; pdf: Buffer }): FastifyReply {
  return (
    reply
      .header('content-type', 'application/pdf')
      .header('content-disposition', `attachment; filename="${doc.number}.pdf"`)
      .header('cache-control', 'private, no-store')
      .header('x-content-type-options', 'nosniff')
      // A Buffer is sent as it is (no serializer); route schemas only document it as binary.
      .send(doc.pdf as unknown as string)
  );
}
