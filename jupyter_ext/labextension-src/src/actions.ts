/**
 * Explain the error, review, and hint for the active cell: the commands, and the panel
 * under the cell where their answers show (a review's findings each with the line they
 * are about, and "Apply fix" where the model gave one).
 */
import { Cell } from '@jupyterlab/cells';
import { NotebookPanel } from '@jupyterlab/notebook';

import { cellBody } from './cells';
import { IFinding, requestAPI } from './request';

const PANEL = 'lc-CellPanel';

export type ActionName = 'explain-error' | 'review' | 'hint';

/** The panel under `cell` (replacing an older one), with a title and a close button. */
function panelFor(cell: Cell, title: string): HTMLElement {
  cell.node.querySelector(`:scope > .${PANEL}`)?.remove();
  const panel = document.createElement('div');
  panel.className = PANEL;
  const header = document.createElement('div');
  header.className = 'lc-CellPanel-header';
  header.textContent = title;
  const close = document.createElement('button');
  close.className = 'lc-CellPanel-close';
  close.textContent = '×';
  close.title = 'Close';
  close.onclick = () => panel.remove();
  header.appendChild(close);
  panel.appendChild(header);
  cell.node.appendChild(panel);
  return panel;
}

function paragraph(parent: HTMLElement, text: string, className: string): HTMLElement {
  const element = document.createElement('div');
  element.className = className;
  element.textContent = text;
  parent.appendChild(element);
  return element;
}

function showFindings(panel: HTMLElement, cell: Cell, findings: IFinding[], complete: boolean): void {
  if (!findings.length) {
    paragraph(panel, 'No problems found.', 'lc-CellPanel-body');
  }
  for (const f of findings) {
    const row = paragraph(panel, '', `lc-Finding lc-Finding-${f.severity}`);
    row.dataset.line = String(f.line);
    paragraph(row, `Line ${f.line + 1} · ${f.severity} · ${f.category}: ${f.message}`, 'lc-Finding-message');
    if (f.replacement !== null) {
      const apply = document.createElement('button');
      apply.className = 'lc-Finding-apply';
      apply.textContent = 'Apply fix';
      apply.onclick = () => {
        const lines = cell.model.sharedModel.getSource().split('\n');
        lines[f.line] = f.replacement as string;
        cell.model.sharedModel.setSource(lines.join('\n'));
        row.remove();
      };
      row.appendChild(apply);
    }
  }
  if (!complete) {
    paragraph(panel, 'The review ran out of tokens: these are the findings it completed.', 'lc-CellPanel-note');
  }
}

const TITLES: Record<ActionName, string> = {
  'explain-error': 'loopcoder: the error explained',
  review: 'loopcoder: review',
  hint: 'loopcoder: hint'
};

/** Run `action` on the active cell of `notebook`, showing progress and the answer (or the error) in the cell. */
export async function runAction(notebook: NotebookPanel, action: ActionName, withOutputs: boolean): Promise<void> {
  const cell = notebook.content.activeCell;
  if (!cell) {
    return;
  }
  const body = cellBody(notebook, notebook.content.activeCellIndex, withOutputs || action === 'explain-error');
  const panel = panelFor(cell, TITLES[action]);
  const waiting = paragraph(panel, 'Thinking…', 'lc-CellPanel-body lc-CellPanel-waiting');
  try {
    if (action === 'review') {
      const answer = await requestAPI<{ findings: IFinding[]; complete: boolean }>('review', body);
      waiting.remove();
      showFindings(panel, cell, answer.findings, answer.complete);
    } else if (action === 'hint') {
      const answer = await requestAPI<{ hint: string }>('hint', body);
      waiting.remove();
      paragraph(panel, answer.hint, 'lc-CellPanel-body');
    } else {
      const answer = await requestAPI<{ markdown: string }>('explain-error', body);
      waiting.remove();
      paragraph(panel, answer.markdown, 'lc-CellPanel-body lc-CellPanel-markdown');
    }
  } catch (error) {
    waiting.remove();
    paragraph(panel, (error as Error).message, 'lc-CellPanel-body lc-CellPanel-error');
  }
}
