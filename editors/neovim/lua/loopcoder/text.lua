-- Pure text helpers: the suggestion in a server's answer, and the part of it a partial accept takes.
local M = {}

--- The leading part of `text` that "accept a word" inserts: spaces, then one word or one run of punctuation.
function M.next_word(text)
  local leading = text:match('^%s*') or ''
  local rest = text:sub(#leading + 1)
  if leading:find('\n') then
    return leading:match('^[^\n]*\n') -- a line break ends the word
  end
  local word = rest:match('^[%w_]+') or rest:match('^[^%w_%s]+') or ''
  return leading .. word
end

--- The leading part of `text` that "accept a line" inserts: the rest of this line, or the
--- line break and the next line when this one has nothing left.
function M.next_line(text)
  local line = text:match('^[^\n]*')
  if line ~= '' or #text == 0 then
    return line
  end
  return '\n' .. (text:sub(2):match('^[^\n]*'))
end

local function insert_text(item)
  local value = item.insertText
  if type(value) == 'table' then -- a StringValue (snippet): the plain text is good enough for ghost text
    value = value.value
  end
  return type(value) == 'string' and value or nil
end

--- The first suggestion of a textDocument/inlineCompletion answer:
--- { text = ..., range = lsp.Range or nil }, or nil.
function M.from_inline_completion(result)
  if type(result) ~= 'table' then
    return nil
  end
  local items = result.items or result
  local item = items[1]
  local text = item and insert_text(item)
  if not text or text == '' then
    return nil
  end
  return { text = text, range = item.range }
end

--- The first item of a textDocument/completion answer as a suggestion, or nil.
function M.from_completion(result)
  if type(result) ~= 'table' then
    return nil
  end
  local items = result.items or result
  local item = items[1]
  if type(item) ~= 'table' then
    return nil
  end
  local edit = item.textEdit
  local text = edit and edit.newText or insert_text(item) or item.label
  if type(text) ~= 'string' or text == '' then
    return nil
  end
  return { text = text, range = edit and (edit.range or edit.insert) }
end

--- The part of `text` still to show when `typed` was typed since it was suggested; nil when
--- the typing does not follow the suggestion (or took all of it).
function M.after_typed(text, typed)
  if typed == '' then
    return text
  end
  if text:sub(1, #typed) ~= typed or #typed >= #text then
    return nil
  end
  return text:sub(#typed + 1)
end

return M
