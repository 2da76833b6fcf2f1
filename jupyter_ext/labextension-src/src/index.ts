/**
 * loopcoder for JupyterLab: the inline completion provider, the explain / review / hint
 * commands in the cell context menu and the command palette, and New Form App (the palette
 * and the notebook's context menu).
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { ICompletionProviderManager } from '@jupyterlab/completer';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { ActionName, runAction } from './actions';
import { LoopcoderInlineProvider } from './provider';
import { scaffoldForm } from './scaffold';

const PLUGIN_ID = 'loopcoder-jupyterlab:plugin';
const SCAFFOLD_COMMAND = 'loopcoder:scaffold-form';

const COMMANDS: Array<{ id: string; action: ActionName; label: string }> = [
  { id: 'loopcoder:explain-error', action: 'explain-error', label: 'loopcoder: Explain the Error of This Cell' },
  { id: 'loopcoder:review-cell', action: 'review', label: 'loopcoder: Review This Cell' },
  { id: 'loopcoder:hint', action: 'hint', label: 'loopcoder: Hint for This Cell' }
];

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Notebook-aware ghost text, explain, review and hint for a cell, and a form app from a sentence, from loopcoder.',
  autoStart: true,
  requires: [ICompletionProviderManager, INotebookTracker],
  optional: [ICommandPalette, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    completions: ICompletionProviderManager,
    notebooks: INotebookTracker,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null
  ) => {
    const provider = new LoopcoderInlineProvider();
    completions.registerInlineProvider(provider);

    for (const { id, action, label } of COMMANDS) {
      app.commands.addCommand(id, {
        label,
        isEnabled: () => notebooks.activeCell !== null,
        execute: async () => {
          const panel = notebooks.currentWidget;
          if (panel) {
            await runAction(panel, action, provider.settings.includeOutputs);
          }
        }
      });
      app.contextMenu.addItem({ command: id, selector: '.jp-Notebook .jp-Cell', rank: 20 });
      palette?.addItem({ command: id, category: 'loopcoder' });
    }

    // A form app next to the current notebook: the endpoint places it relative to the notebook's folder.
    app.commands.addCommand(SCAFFOLD_COMMAND, {
      label: 'loopcoder: New Form App…',
      isEnabled: () => notebooks.currentWidget !== null,
      execute: async () => {
        const panel = notebooks.currentWidget;
        return panel ? await scaffoldForm(panel.context.path) : null;
      }
    });
    app.contextMenu.addItem({ command: SCAFFOLD_COMMAND, selector: '.jp-Notebook', rank: 21 });
    palette?.addItem({ command: SCAFFOLD_COMMAND, category: 'loopcoder' });

    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          const update = () => {
            provider.settings = {
              enabled: settings.get('enabled').composite as boolean,
              streaming: settings.get('streaming').composite as boolean,
              includeOutputs: settings.get('includeOutputs').composite as boolean
            };
          };
          update();
          settings.changed.connect(update);
        })
        .catch(reason => console.error('loopcoder: cannot load settings', reason));
    }
  }
};

export default plugin;
