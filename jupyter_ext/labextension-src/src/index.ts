/**
 * loopcoder for JupyterLab: the inline completion provider, and the explain / review / hint
 * commands in the cell context menu and the command palette.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { ICompletionProviderManager } from '@jupyterlab/completer';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { ActionName, runAction } from './actions';
import { LoopcoderInlineProvider } from './provider';

const PLUGIN_ID = 'loopcoder-jupyterlab:plugin';

const COMMANDS: Array<{ id: string; action: ActionName; label: string }> = [
  { id: 'loopcoder:explain-error', action: 'explain-error', label: 'loopcoder: Explain the Error of This Cell' },
  { id: 'loopcoder:review-cell', action: 'review', label: 'loopcoder: Review This Cell' },
  { id: 'loopcoder:hint', action: 'hint', label: 'loopcoder: Hint for This Cell' }
];

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Notebook-aware ghost text, and explain, review and hint for a cell, from loopcoder.',
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
