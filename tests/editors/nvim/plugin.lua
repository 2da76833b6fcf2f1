-- editors/neovim (the loopcoder plugin) in a headless Neovim 0.7 or 0.12, with the real server:
-- setup() errors, then type in insert mode with nvim_feedkeys, wait for the ghost text,
-- accept a word of it and then the rest with the plugin's keymaps, then :LoopcoderReview.
-- LOOPCODER_NVIM_INLINE picks setup()'s `inline` ("auto" or "extmark"); results go to a JSON file.
--
-- Typed keys are only read by the main loop, so after nvim_feedkeys this script returns
-- and goes on from timers.
local here = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':h')
local common = dofile(here .. '/common.lua')
vim.opt.runtimepath:prepend(assert(os.getenv('LOOPCODER_NVIM_PLUGIN')))

local uv = vim.uv or vim.loop
local api = vim.api
local INLINE = os.getenv('LOOPCODER_NVIM_INLINE') or 'auto'
local TYPED = 'a' -- typed after `return `: the model goes on with ` + b`

local loopcoder = require('loopcoder')
local text = require('loopcoder.text')
local commands = require('loopcoder.commands')

-- Every message the plugin shows, in order; kept here, not shown (an error message shown
-- during vim.cmd() would raise in this script).
local messages = {}
common.results.messages = messages
vim.notify = function(message, level)
  table.insert(messages, { message = message, level = level })
end

--- Call `check()` every 50 ms until it returns true (then `done()`) or `timeout_ms` pass (then `done(error)`).
local function poll(what, timeout_ms, check, done)
  local deadline = uv.now() + timeout_ms
  local function tick()
    local ok, ready = pcall(check)
    if ok and ready then
      return done()
    elseif not ok or uv.now() > deadline then
      return done(not ok and tostring(ready) or ('timed out after %d ms waiting for %s'):format(timeout_ms, what))
    end
    vim.defer_fn(tick, 50)
  end
  tick()
end

local function setup_error(opts)
  local ok, err = pcall(loopcoder.setup, opts)
  return ok and 'no error' or tostring(err)
end

common.step('pure', function(out)
  out.errors = {
    missing_executable = setup_error({ cmd = { '/nonexistent/bin/loopcoder', 'lsp' } }),
    bad_cmd = setup_error({ cmd = 'loopcoder lsp' }),
    unknown_option = setup_error({ cmd = common.server_cmd, colour = 'blue' }),
    unknown_setting = setup_error({ cmd = common.server_cmd, settings = { maxTokenz = 8 } }),
    bad_setting_type = setup_error({ cmd = common.server_cmd, settings = { maxTokens = 'many' } }),
    bad_choice = setup_error({ cmd = common.server_cmd, settings = { backend = 'cloud' } }),
    bad_inline = setup_error({ cmd = common.server_cmd, inline = 'popup' }),
    bad_keymap = setup_error({ cmd = common.server_cmd, keymaps = { accept_all = '<C-a>' } }),
    native_before_0_12 = vim.fn.has('nvim-0.12') == 0 and setup_error({ cmd = common.server_cmd, inline = 'native' })
      or vim.NIL,
  }
  out.next_word = { text.next_word(' + b'), text.next_word('foo(bar)'), text.next_word('\n    x') }
  out.next_line = { text.next_line('a + b\nc'), text.next_line('\n    return x\n') }
  out.from_completion = text.from_completion({ isIncomplete = true, items = { { label = 'b', textEdit = {
    newText = ' + b', range = { start = { line = 2, character = 12 }, ['end'] = { line = 2, character = 12 } } } } } })
  out.from_inline = text.from_inline_completion({ items = { { insertText = ' + b' } } })
  out.empty_inline = text.from_inline_completion({ items = {} }) or vim.NIL
  out.after_typed = { text.after_typed(' + b', ' +'), text.after_typed(' + b', ' -') or vim.NIL }
  local _, why = commands.scaffold_argument('  ', '/tmp/form')
  out.scaffold_without_description = why
end)

local inline = { ghost = vim.NIL }
common.results.inline_completion = inline
local bufnr, client, namespace

local function finish()
  vim.cmd('stopinsert')
  vim.schedule(function()
    if os.getenv('LOOPCODER_NVIM_REVIEW') == '1' and client then
      common.step('review', function(out)
        local flask = common.open('flask_app.py', common.FLASK)
        assert(vim.wait(10000, function() return vim.lsp.buf_is_attached(flask, client.id) end, 50),
          'the client did not attach to the review buffer')
        out.line_count = api.nvim_buf_line_count(flask)
        local seen = #messages
        vim.cmd('LoopcoderReview')
        assert(vim.wait(180000, function()
          return #messages > seen and messages[#messages].message:find('finding%(s%)') ~= nil
        end, 100), 'no "finding(s)" message in 180 s')
        out.messages = vim.list_slice(messages, seen + 1)
        out.findings = tonumber(messages[#messages].message:match('(%d+) finding'))
        vim.wait(10000, function()
          return #vim.diagnostic.get(flask, { namespace = nil }) >= out.findings
        end, 50)
        out.diagnostics = vim.tbl_map(function(d)
          return { lnum = d.lnum, end_lnum = d.end_lnum, message = d.message, source = d.source }
        end, vim.tbl_filter(function(d) return d.source == 'loopcoder' end, vim.diagnostic.get(flask)))
      end)
    end
    common.step('no_client', function(out)
      vim.cmd('enew')
      vim.bo.filetype = 'text'
      local seen = #messages
      vim.cmd('LoopcoderHint')
      out.messages = vim.list_slice(messages, seen + 1)
    end)
    common.step('scaffold_prompts', function(out)
      vim.cmd('buffer ' .. bufnr)
      local answers = { '' }
      vim.ui.input = function(_, on_confirm) on_confirm(table.remove(answers, 1)) end
      local seen = #messages
      vim.cmd('LoopcoderScaffold')
      out.messages = vim.list_slice(messages, seen + 1)
    end)
    for _, c in ipairs(vim.lsp.get_active_clients and vim.lsp.get_active_clients() or vim.lsp.get_clients()) do
      if vim.fn.has('nvim-0.11') == 1 then c:stop() else c.stop() end
    end
    vim.wait(5000, function() return #(vim.lsp.get_clients and vim.lsp.get_clients() or vim.lsp.get_active_clients()) == 0 end, 50)
    vim.cmd('qa!')
  end)
end

local ok = common.step('start', function(out)
  local config = loopcoder.setup({
    cmd = common.server_cmd,
    filetypes = { 'python' },
    settings = common.init_options,
    inline = INLINE,
    debounce_ms = 50,
  })
  out.inline = config.inline
  out.keymaps = config.keymaps
  namespace = config.inline == 'native' and api.nvim_get_namespaces()['nvim.lsp.inline_completion']
    or require('loopcoder.ghost').namespace
  bufnr = common.open('add.py', common.ADD)
  assert(vim.wait(30000, function()
    client = require('loopcoder.compat').client_for(bufnr)
    return client ~= nil and client.initialized
  end, 50), 'the server did not start and initialize in 30 s')
end)

if not ok then
  vim.cmd('qa!')
  return
end

-- Safety net: whatever happens below, Neovim leaves.
vim.defer_fn(function()
  inline.error = inline.error or 'the script did not finish in 280 s'
  common.write()
  vim.cmd('qa!')
end, 280000)

local function line()
  return api.nvim_buf_get_lines(bufnr, 2, 3, true)[1]
end

local function ghost()
  local mark = api.nvim_buf_get_extmarks(bufnr, namespace, 0, -1, { details = true })[1]
  if not mark then
    return nil
  end
  local details = mark[4]
  return {
    row = mark[2], col = mark[3],
    text = table.concat(vim.tbl_map(function(chunk) return chunk[1] end, details.virt_text or {})),
    virt_text_pos = details.virt_text_pos,
  }
end

local function fail(err)
  inline.error = err
  common.write()
  finish()
end

local function keys(lhs)
  api.nvim_feedkeys(api.nvim_replace_termcodes(lhs, true, false, true), 'mt', false)
end

api.nvim_win_set_cursor(0, { 3, 0 })
keys('A' .. TYPED)
inline.line_before = '    return ' .. TYPED
poll('the ghost text', 120000, ghost, function(err)
  if err then return fail(err) end
  inline.ghost = ghost()
  inline.mode = api.nvim_get_mode().mode
  -- Accept a word (the default <M-Right>), then the rest (<Tab>).
  inline.word = text.next_word(inline.ghost.text)
  keys('<M-Right>')
  poll('the accepted word', 10000, function() return line() ~= inline.line_before end, function(word_err)
    if word_err then return fail(word_err) end
    inline.line_after_word = line()
    poll('the rest of the ghost text', 60000, ghost, function(rest_err)
      if rest_err then return fail(rest_err) end
      inline.rest = ghost()
      keys('<Tab>')
      poll('the accepted rest', 10000, function() return line() ~= inline.line_after_word end, function(tab_err)
        inline.error = tab_err or vim.NIL
        inline.line = line()
        inline.ghost_after = #api.nvim_buf_get_extmarks(bufnr, namespace, 0, -1, {})
        common.write()
        finish()
      end)
    end)
  end)
end)
