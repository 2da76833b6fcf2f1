-- :LoopcoderScaffold in a headless Neovim 0.7 or 0.12 with the real server: the sentence and the folder
-- (vim.ui.input stubbed), a preview that writes nothing, the summary shown, then vim.ui.select (stubbed)
-- answered Create or Cancel; and a folder outside the workspace refused before anything is asked.
-- The sentence states every field's type, so no model is loaded. Results go to a JSON file.
local here = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':h')
local common = dofile(here .. '/common.lua')
vim.opt.runtimepath:prepend(assert(os.getenv('LOOPCODER_NVIM_PLUGIN')))

local loopcoder = require('loopcoder')
local commands = require('loopcoder.commands')

local LEAVE = '请做一个员工请假申请表单，包含申请人姓名、所属部门（研发部、市场部、财务部）、请假开始日期、结束日期、'
  .. '请假天数、请假原因，以及联系邮箱'

local messages = {}
vim.notify = function(message, level)
  table.insert(messages, { message = message, level = level })
end

-- Safety net: whatever happens below, Neovim leaves.
vim.defer_fn(function()
  common.results.timed_out = true
  common.write()
  vim.cmd('qa!')
end, 120000)

common.step('pure', function(out)
  local argument, why = commands.confirm_argument({ summary = {} }, 'file:///w/app')
  out.confirm_without_spec = { argument = argument or vim.NIL, why = why }
  out.confirm = commands.confirm_argument({ spec = { title = 'T' } }, 'file:///w/app')
  out.lines = commands.preview_lines({ summary = { 'T (table record), 1 field', 'A (a): text' },
    notes = { 'a note' }, files = { 'file:///w/app/app.py' }, folder = 'file:///w/app' })
end)

local bufnr
local ok = common.step('start', function()
  loopcoder.setup({ cmd = common.server_cmd, filetypes = { 'python' },
    settings = { maxTokens = 8, temperature = 0, prewarm = false } })
  bufnr = common.open('add.py', common.ADD)
  assert(vim.wait(30000, function()
    local client = require('loopcoder.compat').client_for(bufnr)
    return client ~= nil and client.initialized
  end, 50), 'the server did not start and initialize in 30 s')
end)

--- :LoopcoderScaffold with `answers` to vim.ui.input and `choice` to vim.ui.select; waits for a message
--- matching `until_pattern`, then records the messages and what vim.ui.select was asked.
local function scaffold(name, answers, choice, until_pattern)
  common.step(name, function(out)
    vim.cmd('buffer ' .. bufnr)
    vim.ui.input = function(_, on_confirm) on_confirm(table.remove(answers, 1)) end
    out.selects = {}
    vim.ui.select = function(items, opts, on_choice)
      table.insert(out.selects, { items = items, prompt = opts.prompt })
      on_choice(choice, choice and vim.fn.index(items, choice) + 1 or nil)
    end
    local seen = #messages
    vim.cmd('LoopcoderScaffold')
    local done = vim.wait(60000, function()
      for i = seen + 1, #messages do
        if messages[i].message:find(until_pattern) then return true end
      end
      return false
    end, 50)
    out.messages = vim.list_slice(messages, seen + 1)
    assert(done, 'no message matching ' .. until_pattern .. ' in 60 s')
  end)
end

if ok then
  scaffold('confirm', { LEAVE, common.workdir .. '/leave' }, 'Create', 'wrote %d+ file')
  scaffold('cancel', { LEAVE, common.workdir .. '/cancelled' }, 'Cancel', 'nothing was written')
  scaffold('outside', { LEAVE, '/tmp/loopcoder-outside-the-workspace' }, 'Create', 'failed')
end
common.write()
vim.cmd('qa!')
