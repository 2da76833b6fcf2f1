-- Ghost text drawn with extmarks, for Neovim 0.7 to 0.11 (0.12 has vim.lsp.inline_completion).
--
-- After each change in insert mode, and a pause of `debounce_ms`, the plugin asks the
-- server for textDocument/inlineCompletion (textDocument/completion where the server
-- lacks it), cancelling the request before it. The answer is drawn at the cursor if the
-- buffer and the cursor are still where they were when it was asked. Typing the start
-- of the suggestion shortens it without asking again.
local compat = require('loopcoder.compat')
local text = require('loopcoder.text')

local api = vim.api
local M = {}

M.namespace = api.nvim_create_namespace('loopcoder.ghost')
vim.cmd('highlight default link LoopcoderGhost Comment')

local AUTOMATIC = 2 -- InlineCompletionTriggerKind.Automatic
local INVOKED = 1 -- CompletionTriggerKind.Invoked

---@type table<integer, table> per buffer: client_id, debounce_ms, timer, request, shown, last_error
local states = {}

local function cursor()
  local pos = api.nvim_win_get_cursor(0)
  return pos[1] - 1, pos[2]
end

local function in_insert_mode()
  return api.nvim_get_mode().mode:sub(1, 1) == 'i'
end

local function stop_timer(state)
  if state.timer then
    state.timer:stop()
    state.timer:close()
    state.timer = nil
  end
end

local function cancel_request(state)
  local request = state.request
  state.request = nil
  if request and request.id then
    local client = vim.lsp.get_client_by_id(request.client_id)
    if client and not compat.is_stopped(client) then
      compat.cancel(client, request.id)
    end
  end
end

--- Remove the ghost text of `bufnr` and stop asking for it.
function M.clear(bufnr)
  local state = states[bufnr]
  if not state then
    return
  end
  stop_timer(state)
  cancel_request(state)
  state.shown = nil
  if api.nvim_buf_is_valid(bufnr) then
    api.nvim_buf_clear_namespace(bufnr, M.namespace, 0, -1)
  end
end

--- Draw `suggestion` at (row, col) of `bufnr`: its first line after the cursor, the others below.
local function show(bufnr, row, col, suggestion)
  local state = states[bufnr]
  api.nvim_buf_clear_namespace(bufnr, M.namespace, 0, -1)
  local lines = vim.split(suggestion, '\n', { plain = true })
  local below = {}
  for i = 2, #lines do
    below[#below + 1] = { { lines[i], 'LoopcoderGhost' } }
  end
  local opts = {
    virt_text = { { lines[1], 'LoopcoderGhost' } },
    -- 'inline' pushes the rest of the line aside (0.10+); before that, 'overlay' draws over it.
    virt_text_pos = compat.has_inline_virt_text and 'inline' or 'overlay',
    hl_mode = 'combine',
  }
  if #below > 0 then
    opts.virt_lines = below
  end
  api.nvim_buf_set_extmark(bufnr, M.namespace, row, col, opts)
  local line = api.nvim_buf_get_lines(bufnr, row, row + 1, true)[1]
  state.shown = {
    row = row, col = col, text = suggestion, tick = api.nvim_buf_get_changedtick(bufnr),
    before = line:sub(1, col), after = line:sub(col + 1),
  }
end

local function report(state, err)
  local message = type(err) == 'table' and err.message or tostring(err)
  if message ~= state.last_error then -- once per distinct error, not once per keystroke
    state.last_error = message
    vim.notify('loopcoder: ' .. message, vim.log.levels.WARN)
  end
end

--- Ask the server for a suggestion at the cursor, replacing any request in flight.
function M.request(bufnr)
  local state = states[bufnr]
  if not state or api.nvim_get_current_buf() ~= bufnr or not in_insert_mode() then
    return
  end
  cancel_request(state)
  local client = vim.lsp.get_client_by_id(state.client_id)
  if not client or compat.is_stopped(client) then
    return
  end
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  local method, extract = 'textDocument/inlineCompletion', text.from_inline_completion
  if client.server_capabilities.inlineCompletionProvider then
    params.context = { triggerKind = AUTOMATIC }
  else
    method, extract = 'textDocument/completion', text.from_completion
    params.context = { triggerKind = INVOKED }
  end
  local row, col = cursor()
  local tick = api.nvim_buf_get_changedtick(bufnr)
  local request = { client_id = client.id }
  local ok, id = compat.request(client, method, params, function(err, result)
    if state.request ~= request then
      return -- cancelled or superseded
    end
    state.request = nil
    if err then
      return report(state, err)
    end
    state.last_error = nil
    local still_row, still_col = cursor()
    if api.nvim_get_current_buf() ~= bufnr or api.nvim_buf_get_changedtick(bufnr) ~= tick
        or still_row ~= row or still_col ~= col or not in_insert_mode() then
      return -- the user moved on; the next change asks again
    end
    local suggestion = extract(result)
    if suggestion then
      show(bufnr, row, col, suggestion.text)
    end
  end, bufnr)
  if ok then
    request.id = id
    state.request = request
  end
end

--- After a change or a cursor move in insert mode: keep what typing followed, else ask again later.
local function on_change(bufnr)
  local state = states[bufnr]
  local row, col = cursor()
  local shown = state.shown
  if shown and row == shown.row and col == shown.col and api.nvim_buf_get_changedtick(bufnr) == shown.tick then
    return -- our own redraw, or a cursor event for the change already handled
  end
  if shown and row == shown.row and col > shown.col then
    local line = api.nvim_buf_get_lines(bufnr, row, row + 1, true)[1]
    if line:sub(1, shown.col) == shown.before and line:sub(col + 1) == shown.after then
      local rest = text.after_typed(shown.text, line:sub(shown.col + 1, col))
      if rest then
        stop_timer(state)
        cancel_request(state)
        return show(bufnr, row, col, rest)
      end
    end
  end
  M.clear(bufnr)
  state.timer = compat.uv.new_timer()
  state.timer:start(state.debounce_ms, 0, vim.schedule_wrap(function()
    stop_timer(state)
    M.request(bufnr)
  end))
end

--- Insert `inserted` at the cursor and put the cursor after it.
function M.insert(bufnr, inserted)
  local row, col = cursor()
  local lines = vim.split(inserted, '\n', { plain = true })
  api.nvim_buf_set_text(bufnr, row, col, row, col, lines)
  local end_row = row + #lines - 1
  local end_col = (#lines == 1 and col or 0) + #lines[#lines]
  api.nvim_win_set_cursor(0, { end_row + 1, end_col })
  return end_row, end_col
end

--- Accept the suggestion shown, or (part 'word' or 'line') its start; false if none is shown.
function M.accept(bufnr, part)
  local state = states[bufnr]
  local shown = state and state.shown
  local row, col = cursor()
  if not shown or row ~= shown.row or col ~= shown.col then
    return false
  end
  local taken = part == 'word' and text.next_word(shown.text) or part == 'line' and text.next_line(shown.text)
    or shown.text
  local rest = shown.text:sub(#taken + 1)
  M.clear(bufnr)
  local end_row, end_col = M.insert(bufnr, taken)
  if rest ~= '' then
    show(bufnr, end_row, end_col, rest)
  end
  return true
end

--- Whether ghost text is shown in `bufnr`.
function M.visible(bufnr)
  return states[bufnr] ~= nil and states[bufnr].shown ~= nil
end

function M.detach(bufnr)
  M.clear(bufnr)
  if states[bufnr] then
    pcall(api.nvim_del_augroup_by_id, states[bufnr].augroup)
    states[bufnr] = nil
  end
end

--- Draw suggestions of client `client_id` in `bufnr` while the user types there.
function M.attach(bufnr, client_id, debounce_ms)
  if states[bufnr] then
    states[bufnr].client_id = client_id
    return
  end
  local augroup = api.nvim_create_augroup('loopcoder.ghost.' .. bufnr, { clear = true })
  states[bufnr] = { client_id = client_id, debounce_ms = debounce_ms, augroup = augroup }
  local function on(events, callback)
    api.nvim_create_autocmd(events, { group = augroup, buffer = bufnr, callback = function() callback(bufnr) end })
  end
  on({ 'InsertEnter', 'TextChangedI', 'CursorMovedI' }, on_change)
  on({ 'InsertLeave', 'BufLeave', 'TextChangedP' }, M.clear)
  on({ 'BufUnload' }, M.detach)
end

return M
