/**
 * New Form App: a form app from a sentence, written next to the notebook (POST /loopcoder/scaffold).
 * The sentence and the folder are asked, a preview (nothing written) shows the spec as the server
 * summarizes it, and only on Create is that same spec sent back and written.
 */
import { Dialog, InputDialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { requestAPI } from './request';

/** What the endpoint answers (docs/jupyter.md); with "preview": true nothing was written yet. */
export interface IScaffoldAnswer {
  folder: string;
  files: string[];
  run: string;
  spec: Record<string, unknown>;
  repairs: string[];
  notes: string[];
  preview?: boolean;
  summary?: string[];
}

const TITLE = 'loopcoder: New Form App';

/** A dialog body of titled lists of lines; a section without a title is plain lines. */
function body(sections: Array<[string, string[]]>, className: string): Widget {
  const node = document.createElement('div');
  node.className = className;
  for (const [heading, lines] of sections) {
    if (!lines.length) {
      continue;
    }
    if (!heading) { // lines of their own, not a list
      for (const line of lines) {
        const text = document.createElement('div');
        text.className = 'lc-Scaffold-line';
        text.textContent = line;
        node.appendChild(text);
      }
      continue;
    }
    const title = document.createElement('div');
    title.className = 'lc-Scaffold-heading';
    title.textContent = heading;
    node.appendChild(title);
    const list = document.createElement('ul');
    for (const line of lines) {
      const item = document.createElement('li');
      item.textContent = line;
      list.appendChild(item);
    }
    node.appendChild(list);
  }
  return new Widget({ node });
}

/** The confirmation's body: the spec's summary (the server's words, the same in every editor), the notes, the files. */
export function previewBody(preview: IScaffoldAnswer): Widget {
  const [form, ...fields] = preview.summary ?? [];
  return body([
    ['', form ? [form] : []],
    ['Fields', fields],
    ['Notes', preview.notes ?? []],
    ['Names changed', preview.repairs ?? []],
    ['', [`${preview.files.length} files in ${preview.folder}/`]]
  ], 'lc-Scaffold-preview');
}

function resultBody(written: IScaffoldAnswer): Widget {
  return body([
    ['Written', written.files],
    ['Run it from the server\'s root', [written.run]]
  ], 'lc-Scaffold-result');
}

/** The New Form App command for the notebook at `path`: null when cancelled (nothing written) or refused. */
export async function scaffoldForm(path: string): Promise<IScaffoldAnswer | null> {
  const sentence = await InputDialog.getText({
    title: TITLE,
    label: 'Describe the form in a sentence',
    placeholder: 'a form to record equipment repairs with date, id, fault type and handler'
  });
  if (!sentence.button.accept) {
    return null;
  }
  const description = (sentence.value ?? '').trim();
  if (!description) {
    await showErrorMessage(TITLE, 'a form needs a description, such as "a form to record equipment repairs with date, '
      + 'id, fault type and handler"');
    return null;
  }
  const folderAnswer = await InputDialog.getText({
    title: TITLE, label: 'Folder for the app, inside the notebook\'s folder', text: 'form_app'
  });
  const folder = (folderAnswer.value ?? '').trim();
  if (!folderAnswer.button.accept || !folder) {
    return null;
  }
  try {
    // The preview writes nothing, and refuses a folder outside the root or already full before anyone confirms.
    const preview = await requestAPI<IScaffoldAnswer>('scaffold', { path, folder, description, preview: true });
    const confirm = await showDialog({
      title: 'loopcoder: create this form app?',
      body: previewBody(preview),
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Create' })]
    });
    if (!confirm.button.accept) {
      return null;
    }
    // The spec the user saw, as it came: the model is not asked again.
    const written = await requestAPI<IScaffoldAnswer>('scaffold', { path, folder, spec: preview.spec });
    await showDialog({ title: 'loopcoder: the form app is written', body: resultBody(written),
                       buttons: [Dialog.okButton()] });
    return written;
  } catch (error) {
    await showErrorMessage(TITLE, (error as Error).message);
    return null;
  }
}
