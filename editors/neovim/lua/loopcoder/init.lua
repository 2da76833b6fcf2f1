-- loopcoder for Neovim 0.7 and later, on the built-in LSP client.
--
--   require('loopcoder').setup({ cmd = { '/path/to/.venv/bin/loopcoder', 'lsp' } })
--
-- starts `loopcoder lsp` for the configured filetypes and shows its suggestions as ghost
-- text: Neovim 0.12's vim.lsp.inline_completion where it exists, else extmarks
-- (lua/loopcoder/ghost.lua). All the assistant's logic is in the server.
local commands = require('loopcoder.commands')
local compat = require('loopcoder.compat')
local config = require('loopcoder.config')
local ghost = require('loopcoder.ghost')

local api = vim.api
local M = {}

M.config = nil -- the resolved options, once setup() ran
local clients_by_root = {} -- Neovim 0.7 starts clients by hand: one per root folder

local function inline_module()
  return M.config.inline == 'native' and require('loopcoder.native') or ghost
end

local function feed(lhs)
  api.nvim_feedkeys(api.nvim_replace_termcodes(lhs, true, false, true), 'n', false)
end

--- Accept the suggestion shown in the current buffer; part 'word' or 'line' takes only its start.
function M.accept(part)
  return M.config.inline ~= false and inline_module().accept(api.nvim_get_current_buf(), part) or false
end

--- Hide the suggestion shown in the current buffer.
function M.dismiss()
  if M.config.inline == 'native' then
    return require('loopcoder.native').dismiss(api.nvim_get_current_buf())
  end
  local visible = ghost.visible(api.nvim_get_current_buf())
  ghost.clear(api.nvim_get_current_buf())
  return visible
end

local ACTIONS = {
  accept = function() return M.accept() end,
  accept_word = function() return M.accept('word') end,
  accept_line = function() return M.accept('line') end,
  dismiss = M.dismiss,
}

local function set_keymaps(bufnr)
  for name, lhs in pairs(M.config.keymaps) do
    if lhs then
      -- With no suggestion shown, the key does what it did before (a <Tab> inserts a tab).
      vim.keymap.set('i', lhs, function()
        if not ACTIONS[name]() then
          feed(lhs)
        end
      end, { buffer = bufnr, desc = 'loopcoder: ' .. name:gsub('_', ' ') })
    end
  end
end

local function on_attach(client, bufnr)
  if M.config.inline == 'native' then
    require('loopcoder.native').attach(bufnr)
  elseif M.config.inline == 'extmark' then
    ghost.attach(bufnr, client.id, M.config.debounce_ms)
  end
  if M.config.inline then
    set_keymaps(bufnr)
  end
end

local function client_config(root_dir)
  return {
    name = 'loopcoder',
    cmd = M.config.cmd,
    root_dir = root_dir,
    init_options = M.config.settings,
    on_attach = on_attach,
  }
end

--- Start (or reuse) the server for buffer `bufnr` and attach it.
function M.attach(bufnr)
  if vim.bo[bufnr].buftype ~= '' then
    return
  end
  local name = api.nvim_buf_get_name(bufnr)
  local root_dir = (name ~= '' and compat.find_root(name, M.config.root_markers)) or vim.fn.getcwd()
  if vim.lsp.start then -- 0.8+: reuses a client of the same name and root
    return vim.lsp.start(client_config(root_dir), { bufnr = bufnr })
  end
  local client_id = clients_by_root[root_dir]
  local client = client_id and vim.lsp.get_client_by_id(client_id)
  if not client or compat.is_stopped(client) then
    client_id = vim.lsp.start_client(client_config(root_dir))
    if not client_id then
      return vim.notify('loopcoder: could not start ' .. table.concat(M.config.cmd, ' '), vim.log.levels.ERROR)
    end
    clients_by_root[root_dir] = client_id
  end
  vim.lsp.buf_attach_client(bufnr, client_id)
  return client_id
end

--- Configure loopcoder; a bad option raises an error that names it. Safe to call again.
function M.setup(opts)
  M.config = config.resolve(opts)
  local group = api.nvim_create_augroup('loopcoder', { clear = true })
  api.nvim_create_autocmd('FileType', {
    group = group,
    pattern = M.config.filetypes,
    callback = function(args) M.attach(args.buf) end,
  })
  commands.create()
  -- Buffers opened before setup() ran.
  for _, bufnr in ipairs(api.nvim_list_bufs()) do
    if api.nvim_buf_is_loaded(bufnr) and vim.tbl_contains(M.config.filetypes, vim.bo[bufnr].filetype) then
      M.attach(bufnr)
    end
  end
  return M.config
end

return M
