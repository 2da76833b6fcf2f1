-- Neovim 0.12: vim.lsp.config + vim.lsp.enable start the server; with inline completion
-- enabled, type after `return ` in insert mode, wait for the ghost text, accept it with
-- vim.lsp.inline_completion.get(); then type below the last line of a file without a
-- final newline; then lose sync on purpose and get it back with `:w` and `:e`; then the review.
-- Results go to a JSON file.
--
-- Typed keys are only read by the main loop, so after nvim_feedkeys this script returns
-- and goes on from timers.
local here = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':h')
local common = dofile(here .. '/common.lua')

-- The namespace of the ghost text's extmarks, created when the module loads.
require('vim.lsp.inline_completion')
local GHOST = vim.api.nvim_get_namespaces()['nvim.lsp.inline_completion']
local TYPED = 'a' -- typed after `return `: the model goes on with ` + b`
local bufnr, client -- add.py, and the loopcoder client once it started
local shown = common.record_messages()

--- Call `check()` every 50 ms until it returns true (then `done()`) or `timeout_ms` pass (then `error` names `what`).
local function poll(what, timeout_ms, check, done)
  local deadline = vim.uv.now() + timeout_ms
  local function tick()
    local ok, ready = pcall(check)
    if ok and ready then
      return done()
    elseif not ok or vim.uv.now() > deadline then
      return done(not ok and ready or ('timed out after %d ms waiting for %s'):format(timeout_ms, what))
    end
    vim.defer_fn(tick, 50)
  end
  tick()
end

--- Run `step(out, done)` as results[name]; an error it raises is recorded and `done()` still runs.
local function async_step(name, step, done)
  local out = {}
  common.results[name] = out
  local function finished(err)
    out.error = err or vim.NIL
    common.write()
    done()
  end
  vim.cmd('stopinsert')
  vim.schedule(function()
    local ok, err = xpcall(step, debug.traceback, out, finished)
    if not ok then
      finished(err)
    end
  end)
end

local function ghost_text(buf)
  local mark = vim.api.nvim_buf_get_extmarks(buf, GHOST, 0, -1, { details = true })[1]
  local details = mark[4]
  return {
    row = mark[2],
    col = mark[3],
    text = table.concat(vim.tbl_map(function(chunk) return chunk[1] end, details.virt_text or {})),
    virt_lines = #(details.virt_lines or {}),
  }
end

--- `Go` and typing in a file without a final newline: ghost text comes, and no sync error.
local function no_final_newline(out, done)
  local buf = common.open('no_final_newline.py', common.AREA)
  vim.bo[buf].autoindent = false -- the typed spaces are all the indent
  vim.bo[buf].indentexpr = ''
  out.eol = vim.bo[buf].eol
  assert(vim.wait(10000, function() return vim.lsp.buf_is_attached(buf, client.id) end, 50),
    'the client did not attach to no_final_newline.py')
  local seen = #shown
  vim.api.nvim_feedkeys('Go' .. common.TYPED_BELOW, 'nt', false)
  poll('the ghost text below the last line', 60000, function()
    return #vim.api.nvim_buf_get_extmarks(buf, GHOST, 0, -1, {}) > 0
  end, function(err)
    out.lines = vim.api.nvim_buf_get_lines(buf, 0, -1, true)
    out.mode = vim.api.nvim_get_mode().mode
    out.messages = vim.list_slice(shown, seen + 1)
    if not err then
      out.ghost = ghost_text(buf)
    end
    done(err)
  end)
end

--- A change the server cannot apply loses sync: one message, requests fail; `:w` then `:e`
--- (didSave, then didClose and didOpen) bring the document back, as the message advises.
local function resync(out, done)
  local buf = vim.api.nvim_get_current_buf()
  local uri = vim.uri_from_bufnr(buf)
  local seen = #shown
  local inverted = { start = { line = 0, character = 8 }, ['end'] = { line = 0, character = 3 } }
  client:notify('textDocument/didChange', {
    textDocument = { uri = uri, version = vim.lsp.util.buf_versions[buf] + 1000 },
    contentChanges = { { range = inverted, text = 'x' } },
  })
  local function ask()
    return common.request(client, 'textDocument/inlineCompletion', {
      textDocument = { uri = uri },
      position = { line = 1, character = 4 },
      context = { triggerKind = 1 },
    }, 30000, buf)
  end
  local ok, err = pcall(ask)
  out.error_before = ok and vim.NIL or tostring(err)
  vim.cmd('write | edit')
  ask() -- raises if the server still refuses the document
  out.answered_after = true
  out.messages = vim.list_slice(shown, seen + 1)
  done()
end

local function finish()
  vim.cmd('stopinsert')
  vim.schedule(function()
    for _, client in ipairs(vim.lsp.get_clients({ name = 'loopcoder' })) do
      common.step('review', function(out)
        common.review(client, out, function(bufnr)
          assert(vim.wait(10000, function()
            return vim.lsp.buf_is_attached(bufnr, client.id)
          end, 50), 'the client did not attach to the review buffer')
        end)
      end)
      client:stop()
      vim.wait(5000, function() return client:is_stopped() end, 50)
    end
    vim.cmd('qa!')
  end)
end

local inline = { ghost = vim.NIL }
common.results.inline_completion = inline

local ok = common.step('start', function(out)
  out.ghost_namespace = GHOST or vim.NIL
  assert(GHOST, 'no nvim.lsp.inline_completion namespace')
  vim.lsp.config('loopcoder', {
    cmd = common.server_cmd,
    filetypes = { 'python' },
    root_dir = common.workdir,
    init_options = common.init_options,
  })
  vim.lsp.enable('loopcoder')
  vim.lsp.inline_completion.enable(true)
  bufnr = common.open('add.py', common.ADD)
  assert(vim.wait(30000, function()
    client = vim.lsp.get_clients({ bufnr = bufnr, name = 'loopcoder' })[1]
    return client ~= nil and client.initialized
  end, 50), 'the server did not start and initialize in 30 s')
  out.offset_encoding = client.offset_encoding
end)

if not ok then
  vim.cmd('qa!')
  return
end

-- Safety net: whatever happens below, Neovim leaves.
vim.defer_fn(function()
  inline.error = inline.error or 'the script did not finish in 270 s'
  common.write()
  vim.cmd('qa!')
end, 270000)

local function then_the_rest()
  async_step('no_final_newline', no_final_newline, function()
    async_step('resync', resync, finish)
  end)
end

vim.api.nvim_win_set_cursor(0, { 3, 0 })
vim.api.nvim_feedkeys('A' .. TYPED, 'nt', false)

local before = '    return ' .. TYPED
poll('the ghost text', 120000, function()
  return #vim.api.nvim_buf_get_extmarks(bufnr, GHOST, 0, -1, {}) > 0
end, function(err)
  if err then
    inline.error = err
    common.write()
    return then_the_rest()
  end
  inline.ghost = ghost_text(bufnr)
  inline.mode = vim.api.nvim_get_mode().mode
  inline.line_before = vim.api.nvim_buf_get_lines(bufnr, 2, 3, true)[1]
  inline.accepted = vim.lsp.inline_completion.get({ bufnr = bufnr })
  poll('the accepted text', 5000, function()
    return vim.api.nvim_buf_get_lines(bufnr, 2, 3, true)[1] ~= before
  end, function(accept_err)
    inline.error = accept_err or vim.NIL
    inline.line = vim.api.nvim_buf_get_lines(bufnr, 2, 3, true)[1]
    inline.ghost_after = #vim.api.nvim_buf_get_extmarks(bufnr, GHOST, 0, -1, {})
    common.write()
    then_the_rest()
  end)
end)
