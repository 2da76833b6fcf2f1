-- What differs between Neovim 0.7 and 0.12 in the APIs the plugin uses, in one place.
local M = {}

M.uv = vim.uv or vim.loop
M.has_native_inline = vim.fn.has('nvim-0.12') == 1 and vim.lsp.inline_completion ~= nil
M.has_inline_virt_text = vim.fn.has('nvim-0.10') == 1 -- virt_text_pos = 'inline'
local methods_take_self = vim.fn.has('nvim-0.11') == 1 -- client:request() rather than client.request()

--- client:request(method, params, handler, bufnr) -> ok, request_id
function M.request(client, method, params, handler, bufnr)
  if methods_take_self then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

function M.cancel(client, request_id)
  if methods_take_self then
    return client:cancel_request(request_id)
  end
  return client.cancel_request(request_id)
end

function M.is_stopped(client)
  if methods_take_self then
    return client:is_stopped()
  end
  return client.is_stopped()
end

--- The loopcoder client attached to `bufnr`, or nil.
function M.client_for(bufnr)
  if vim.lsp.get_clients then
    return vim.lsp.get_clients({ bufnr = bufnr, name = 'loopcoder' })[1]
  end
  for _, client in pairs(vim.lsp.buf_get_clients(bufnr)) do
    if client.name == 'loopcoder' then
      return client
    end
  end
end

--- The LSP character offset of byte `col` of `line` in `encoding`.
function M.character(line, col, encoding)
  if encoding == 'utf-8' then
    return col
  end
  if methods_take_self then
    return vim.str_utfindex(line, encoding, col, false)
  end
  local utf32, utf16 = vim.str_utfindex(line, col)
  return encoding == 'utf-16' and utf16 or utf32
end

--- The folder holding one of `markers`, searched upward from `path`; nil if none does.
function M.find_root(path, markers)
  local dir = vim.fn.fnamemodify(path, ':p:h')
  while true do
    for _, marker in ipairs(markers) do
      if vim.fn.getftype(dir .. '/' .. marker) ~= '' then
        return dir
      end
    end
    local parent = vim.fn.fnamemodify(dir, ':h')
    if parent == dir then
      return nil
    end
    dir = parent
  end
end

return M
