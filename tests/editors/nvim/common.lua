-- Shared by the Neovim scripts: inputs from the environment, results to a JSON file,
-- and the review check, written against the API of Neovim 0.7 through 0.12.
local M = {}

M.server_cmd = vim.fn.json_decode(assert(os.getenv('LOOPCODER_NVIM_SERVER_CMD')))
M.workdir = assert(os.getenv('LOOPCODER_NVIM_WORKDIR'))
M.results_path = assert(os.getenv('LOOPCODER_NVIM_RESULTS'))
M.init_options = { maxTokens = 8, actionTokens = 256, temperature = 0 }
M.results = { version = vim.fn.execute('version'):match('NVIM v[^\n]+') }

M.ADD = 'def add(a, b):\n    """Return the sum of a and b."""\n    return \n'
-- The canonical review case, docs/examples/flask_app.py (the demo and the Python tests use it too).
M.FLASK = table.concat(vim.fn.readfile(assert(os.getenv('LOOPCODER_NVIM_EXAMPLES')) .. '/flask_app.py'), '\n') .. '\n'

-- No final newline: Neovim's edits below its last line reach one line past the server's last line.
M.AREA = 'def area(width, height):\n    """Return the area of a rectangle."""'
M.TYPED_BELOW = '    return ' -- typed after `Go`: the model goes on with the area

--- Record every window/showMessage from the server, in order, as results.messages (a lost sync shows one).
function M.record_messages()
  local shown = {}
  M.results.messages = shown
  vim.lsp.handlers['window/showMessage'] = function(_, params)
    table.insert(shown, params)
    M.write()
  end
  return shown
end

function M.write()
  local file = assert(io.open(M.results_path, 'w'))
  file:write(vim.fn.json_encode(M.results))
  file:close()
end

--- Run `fn(out)`; `out` (with `error` set if fn raised) becomes results[name], written at once.
function M.step(name, fn)
  local out = {}
  M.results[name] = out
  local ok, err = xpcall(fn, debug.traceback, out)
  if not ok then
    out.error = tostring(err)
  end
  M.write()
  return ok
end

--- A file under the work directory, opened in the current window as a Python buffer.
function M.open(name, text)
  local path = M.workdir .. '/' .. name
  local file = assert(io.open(path, 'w'))
  file:write(text)
  file:close()
  vim.cmd('edit ' .. vim.fn.fnameescape(path))
  vim.bo.filetype = 'python'
  return vim.api.nvim_get_current_buf()
end

--- The result of a request, or an error that says what went wrong.
function M.request(client, method, params, timeout_ms, bufnr)
  local response, err
  if vim.fn.has('nvim-0.11') == 1 then
    response, err = client:request_sync(method, params, timeout_ms, bufnr)
  else
    response, err = client.request_sync(method, params, timeout_ms, bufnr)
  end
  if not response then
    error(('%s: %s'):format(method, tostring(err)))
  end
  if response.err then
    error(('%s: error %s: %s'):format(method, tostring(response.err.code), tostring(response.err.message)))
  end
  return response.result
end

local function lines(bufnr)
  return vim.api.nvim_buf_get_lines(bufnr, 0, -1, true)
end

local function loopcoder_diagnostics(bufnr)
  return vim.tbl_filter(function(d)
    return d.source == 'loopcoder'
  end, vim.diagnostic.get(bufnr))
end

local function lsp_diagnostic(d)
  return {
    range = { start = { line = d.lnum, character = d.col }, ['end'] = { line = d.end_lnum, character = d.end_col } },
    severity = d.severity,
    message = d.message,
    source = d.source,
    code = d.code,
    data = d.user_data and d.user_data.lsp and d.user_data.lsp.data,  -- the server's own, handed back
  }
end

local function is_quickfix(action)
  return type(action.kind) == 'string' and (action.kind == 'quickfix' or vim.startswith(action.kind, 'quickfix.'))
end

--- Review the Flask handler through the code action and its command, then check the
--- diagnostics it publishes and apply each quick fix it offers. `attach(bufnr)` attaches
--- the client where the Neovim version does not do it by itself.
function M.review(client, out, attach)
  local bufnr = M.open('flask_app.py', M.FLASK)
  attach(bufnr)
  local uri = vim.uri_from_bufnr(bufnr)
  local original = lines(bufnr)
  out.line_count = #original
  local whole = { start = { line = 0, character = 0 }, ['end'] = { line = #original - 1, character = #original[#original] } }
  local actions = M.request(client, 'textDocument/codeAction',
    { textDocument = { uri = uri }, range = whole, context = { diagnostics = {} } }, 30000, bufnr) or {}
  out.actions = vim.tbl_map(function(a)
    return { title = a.title, kind = a.kind or vim.NIL, command = a.command or vim.NIL }
  end, actions)
  local review
  for _, action in ipairs(actions) do
    if action.title == 'loopcoder: Review' then
      review = action
    end
  end
  assert(review, 'no "loopcoder: Review" code action')
  local command = review.command
  out.result = M.request(client, 'workspace/executeCommand',
    { command = command.command, arguments = command.arguments }, 180000, bufnr)
  local findings = type(out.result) == 'table' and out.result.findings
  assert(type(findings) == 'table', 'the review command answered no findings list')
  -- publishDiagnostics may arrive just after the command's answer.
  vim.wait(10000, function()
    return #loopcoder_diagnostics(bufnr) == #findings
  end, 50)
  local diagnostics = loopcoder_diagnostics(bufnr)
  out.diagnostics = vim.tbl_map(function(d)
    return { lnum = d.lnum, col = d.col, end_lnum = d.end_lnum, end_col = d.end_col, message = d.message,
             severity = d.severity }
  end, diagnostics)

  -- Each fix as an editor meets it: ask at the diagnostic's range, apply, then undo
  -- (the server's versioned edits are refused once the buffer has moved on).
  out.quickfixes = {}
  for i, d in ipairs(diagnostics) do
    local at = M.request(client, 'textDocument/codeAction', {
      textDocument = { uri = uri },
      range = lsp_diagnostic(d).range,
      context = { diagnostics = { lsp_diagnostic(d) } },
    }, 30000, bufnr) or {}
    local quickfixes = vim.tbl_filter(is_quickfix, at)
    local fix = { titles = vim.tbl_map(function(a) return a.title end, quickfixes) }
    out.quickfixes[i] = fix
    local action = quickfixes[1]
    for _, candidate in ipairs(quickfixes) do  -- the fix for this very diagnostic, if another shares its line
      if candidate.diagnostics and candidate.diagnostics[1] and candidate.diagnostics[1].message == d.message then
        action = candidate
      end
    end
    if action then
      fix.edit = action.edit or vim.NIL
      if action.edit then
        vim.lsp.util.apply_workspace_edit(action.edit, client.offset_encoding)
        fix.after = lines(bufnr)
        fix.changed = not vim.deep_equal(fix.after, original)
        vim.api.nvim_buf_set_lines(bufnr, 0, -1, true, original)
      end
    end
  end
end

return M
