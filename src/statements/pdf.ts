// A statement as a PDF (pdfkit, its built-in Helvetica: the text is real text, selectable and
// searchable). One A4 page holds about forty lines; longer months flow onto more pages.
import PDFDocument from 'pdfkit';
import type { StatementView } from './view.ts';

const margin = 56;
const lineGap = 4;

export async function statementPdf(view: StatementView, createdAt: Date): Promise<Buffer> {
  const doc = new PDFDocument({
    size: 'A4',
    margin,
    info: { Title: `Statement for ${view.title}`, Author: view.issuer.name, Subject: view.email, CreationDate: createdAt },
  });
  const chunks: Buffer[] = [];
  doc.on('data', (chunk: Buffer) => chunks.push(chunk));
  const done = new Promise<Buffer>((resolve, reject) => {
    doc.on('end', () => resolve(Buffer.concat(chunks)));
    doc.on('error', reject);
  });

  const width = doc.page.width - 2 * margin;
  const dateWidth = 100;
  const amountWidth = 80;
  const descriptionX = margin + dateWidth;
  const descriptionWidth = width - dateWidth - amountWidth;
  const amountX = margin + width - amountWidth;

  doc.font('Helvetica-Bold').fontSize(14).text(view.issuer.name);
  doc.font('Helvetica').fontSize(10);
  for (const line of view.issuer.addressLines) doc.text(line);
  doc.moveDown(1.5);
  doc.font('Helvetica-Bold').fontSize(16).text(`Statement for ${view.title}`);
  doc.font('Helvetica').fontSize(10).moveDown(0.5);
  doc.text(`Account: ${view.email}`);
  doc.text(`Period: ${view.period}`);
  if (view.revision) doc.moveDown(0.5).font('Helvetica-Oblique').text(view.revision).font('Helvetica');
  doc.moveDown(1);

  const row = (date: string, description: string, note: string | null, amount: string, bold = false) => {
    const noteHeight = note ? doc.heightOfString(note, { width: descriptionWidth }) : 0;
    const height = doc.heightOfString(description, { width: descriptionWidth }) + noteHeight + lineGap * 2;
    if (doc.y + height > doc.page.height - margin) doc.addPage();
    const y = doc.y;
    doc.font(bold ? 'Helvetica-Bold' : 'Helvetica').fillColor('#000');
    doc.text(date, margin, y, { width: dateWidth - 8 });
    doc.text(amount, amountX, y, { width: amountWidth, align: 'right' });
    doc.text(description, descriptionX, y, { width: descriptionWidth - 8 });
    if (note)
      doc
        .fillColor('#555')
        .text(note, descriptionX, doc.y, { width: descriptionWidth - 8 })
        .fillColor('#000');
    const bottom = doc.y + lineGap;
    doc
      .moveTo(margin, bottom)
      .lineTo(margin + width, bottom)
      .strokeColor('#ddd')
      .lineWidth(0.5)
      .stroke();
    doc.x = margin;
    doc.y = bottom + lineGap;
  };

  doc.fontSize(9).fillColor('#555');
  row('Date (UTC)', 'Description', null, 'Amount', true);
  doc.fontSize(10);
  row(view.openedAt, 'Opening balance', null, view.opening, true);
  for (const r of view.rows) row(r.date, r.description, r.note, r.amount);
  if (view.rows.length === 0) row('', 'Nothing happened in this month.', null, '');
  row(view.closedAt, 'Closing balance', null, view.closing, true);
  doc.end();
  return done;
}
