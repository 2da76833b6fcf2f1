/** A notebook's cells as the server wants them: sources, and the text of their outputs. */
import { ICodeCellModel } from '@jupyterlab/cells';
import { NotebookPanel } from '@jupyterlab/notebook';

import { ICellBody, ICellPayload } from './request';

const TEXT_OUTPUTS = new Set(['stream', 'execute_result', 'display_data', 'error']);

function payload(cell: any, withOutputs: boolean): ICellPayload {
  const kind: string = cell.type;
  const result: ICellPayload = { cell_type: kind, source: cell.sharedModel.getSource() };
  if (kind === 'code' && withOutputs) {
    const outputs = (cell as ICodeCellModel).outputs;
    const kept: Array<Record<string, unknown>> = [];
    for (let i = 0; i < outputs.length; i++) {
      const output = outputs.get(i).toJSON() as Record<string, unknown>;
      if (!TEXT_OUTPUTS.has(output.output_type as string)) {
        continue;
      }
      const data = output.data as Record<string, unknown> | undefined;
      // Images and HTML stay in the browser: the server reads text/plain only.
      kept.push(data ? { ...output, data: { 'text/plain': data['text/plain'] ?? '' } } : output);
    }
    result.outputs = kept;
  }
  return result;
}

/** The request body for cell `index` of `panel`; `source` replaces that cell's text (the editor's, newer). */
export function cellBody(
  panel: NotebookPanel,
  index: number,
  withOutputs: boolean,
  source?: string
): ICellBody {
  const cells: ICellPayload[] = [];
  const model = panel.content.model;
  if (model) {
    for (let i = 0; i < model.cells.length; i++) {
      // Cells below the cursor's do not go into a completion prompt: skip their outputs.
      cells.push(payload(model.cells.get(i), withOutputs && i <= index));
    }
  }
  if (source !== undefined && cells[index]) {
    cells[index].source = source;
  }
  return { path: panel.context.path, cells, cell_index: index };
}
