-- Neovim 0.7: start the server with vim.lsp.start_client, ask textDocument/completion
-- after `return `, apply the item's textEdit; then `Go` and typing below the last line of a
-- file without a final newline, and a completion there; then the review. Results go to a
-- JSON file.
local here = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':h')
local common = dofile(here .. '/common.lua')

local client
local shown = common.record_messages()

common.step('start', function(out)
  local client_id = assert(vim.lsp.start_client({
    name = 'loopcoder',
    cmd = common.server_cmd,
    root_dir = common.workdir,
    init_options = common.init_options,
  }), 'vim.lsp.start_client failed')
  client = vim.lsp.get_client_by_id(client_id)
  assert(vim.wait(30000, function() return client.initialized end, 50), 'the server did not initialize in 30 s')
  out.offset_encoding = client.offset_encoding
end)

local function attach(bufnr)
  assert(vim.lsp.buf_attach_client(bufnr, client.id), 'vim.lsp.buf_attach_client failed')
end

if client and client.initialized then
  common.step('completion', function(out)
    local bufnr = common.open('add.py', common.ADD)
    attach(bufnr)
    -- The cursor after `return `, as in insert mode (normal mode cannot sit past the end of a line).
    local position = { line = 2, character = #'    return ' }
    local result = common.request(client, 'textDocument/completion',
      { textDocument = { uri = vim.uri_from_bufnr(bufnr) }, position = position }, 120000, bufnr)
    out.position = position
    out.items = result and (result.items or result) or {}
    local item = assert(out.items[1], 'no completion item')
    vim.lsp.util.apply_text_edits({ item.textEdit }, bufnr, client.offset_encoding)
    out.line = vim.api.nvim_buf_get_lines(bufnr, 2, 3, true)[1]
  end)

  common.step('no_final_newline', function(out)
    local bufnr = common.open('no_final_newline.py', common.AREA)
    attach(bufnr)
    vim.bo[bufnr].autoindent = false -- the typed spaces are all the indent
    vim.bo[bufnr].indentexpr = ''
    out.eol = vim.bo[bufnr].eol
    local seen = #shown
    vim.api.nvim_feedkeys('Go' .. common.TYPED_BELOW, 'xt', false) -- typed at once, back in normal mode
    out.lines = vim.api.nvim_buf_get_lines(bufnr, 0, -1, true)
    -- The request sends the pending didChange first.
    local position = { line = 2, character = #common.TYPED_BELOW }
    local result = common.request(client, 'textDocument/completion',
      { textDocument = { uri = vim.uri_from_bufnr(bufnr) }, position = position }, 60000, bufnr)
    out.position = position
    out.items = result and (result.items or result) or {}
    out.messages = vim.list_slice(shown, seen + 1)
  end)

  common.step('review', function(out)
    common.review(client, out, attach)
  end)

  vim.lsp.stop_client(client.id)
  vim.wait(5000, function() return client.is_stopped() end, 50)
end
vim.cmd('qa!')
