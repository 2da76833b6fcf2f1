-- Neovim 0.12's own ghost text, vim.lsp.inline_completion, with partial accepts and dismiss on top.
local ghost = require('loopcoder.ghost')
local text = require('loopcoder.text')

local api = vim.api
local M = {}

function M.attach(bufnr)
  vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
end

--- What of `item` is left to insert at the cursor: Neovim hides what was typed since it was asked.
local function remaining(bufnr, item)
  local insert_text = type(item.insert_text) == 'string' and item.insert_text or item.insert_text.value
  if not item.range then
    return insert_text
  end
  local start = item.range.start:to_extmark() -- { row, col }, 0-based
  local pos = api.nvim_win_get_cursor(0)
  if pos[1] - 1 ~= start[1] or pos[2] < start[2] then
    return insert_text
  end
  local line = api.nvim_buf_get_lines(bufnr, start[1], start[1] + 1, true)[1]
  return text.after_typed(insert_text, line:sub(start[2] + 1, pos[2])) or insert_text
end

--- Accept the suggestion shown, or (part 'word' or 'line') its start; false if none is shown.
function M.accept(bufnr, part)
  if not part then
    return vim.lsp.inline_completion.get({ bufnr = bufnr })
  end
  return vim.lsp.inline_completion.get({
    bufnr = bufnr,
    on_accept = function(item)
      local rest = remaining(bufnr, item)
      ghost.insert(bufnr, part == 'word' and text.next_word(rest) or text.next_line(rest))
    end,
  })
end

--- Hide the suggestion shown (the next keystroke asks again); false if none is shown.
function M.dismiss(bufnr)
  return vim.lsp.inline_completion.get({ bufnr = bufnr, on_accept = function() end })
end

return M
