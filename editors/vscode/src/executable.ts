// Finding the `loopcoder` executable that loopcoder.server.path names. Pure but for the file system.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { SettingsError } from './settings';

function isExecutableFile(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/**
 * The absolute path of `setting`: `~` and `${workspaceFolder}` expanded, a relative path
 * taken from the workspace folder, a bare name looked up on PATH. A clear error otherwise.
 */
export function resolveExecutable(setting: string, workspaceFolder: string | undefined,
                                  envPath: string = process.env.PATH ?? ''): string {
  let expanded = setting.replace(/^~(?=$|[\\/])/, os.homedir());
  if (expanded.includes('${workspaceFolder}')) {
    if (!workspaceFolder) {
      throw new SettingsError(`loopcoder.server.path ${JSON.stringify(setting)} uses \${workspaceFolder}, but no folder is open`);
    }
    expanded = expanded.split('${workspaceFolder}').join(workspaceFolder);
  }
  const hasSeparator = expanded.includes('/') || expanded.includes(path.sep);
  const candidates = path.isAbsolute(expanded) ? [expanded]
    : hasSeparator ? (workspaceFolder ? [path.resolve(workspaceFolder, expanded)] : [])
    : envPath.split(path.delimiter).filter(Boolean).map((dir) => path.join(dir, expanded));
  const found = candidates.find(isExecutableFile);
  if (!found) {
    const where = hasSeparator || path.isAbsolute(expanded) ? `${candidates[0] ?? expanded} is not an executable file`
      : `no executable ${JSON.stringify(expanded)} on PATH`;
    throw new SettingsError(`loopcoder.server.path: ${where}. Install loopcoder (\`pip install -e .\` in its checkout) `
      + 'and set loopcoder.server.path to its .venv/bin/loopcoder');
  }
  return found;
}
