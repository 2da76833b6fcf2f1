-- Neovim 0.12: vim.lsp.config + vim.lsp.enable start the server; with inline completion
-- enabled, type after `return ` in insert mode, wait for the ghost text, accept it with
-- vim.lsp.inline_completion.get(); then the review. Results go to a JSON file.
--
-- Typed keys are only read by the main loop, so after nvim_feedkeys this script returns
-- and goes on from timers.
local here = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':h')
local common = dofile(here .. '/common.lua')

-- The namespace of the ghost text's extmarks, created when the module loads.
require('vim.lsp.inline_completion')
local GHOST = vim.api.nvim_get_namespaces()['nvim.lsp.inline_completion']
local TYPED = 'a' -- typed after `return `: the model goes on with ` + b`

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
local bufnr, client

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
  inline.error = inline.error or 'the script did not finish in 240 s'
  common.write()
  vim.cmd('qa!')
end, 240000)

vim.api.nvim_win_set_cursor(0, { 3, 0 })
vim.api.nvim_feedkeys('A' .. TYPED, 'nt', false)

local before = '    return ' .. TYPED
poll('the ghost text', 120000, function()
  return #vim.api.nvim_buf_get_extmarks(bufnr, GHOST, 0, -1, {}) > 0
end, function(err)
  if err then
    inline.error = err
    common.write()
    return finish()
  end
  local mark = vim.api.nvim_buf_get_extmarks(bufnr, GHOST, 0, -1, { details = true })[1]
  local details = mark[4]
  inline.ghost = {
    row = mark[2],
    col = mark[3],
    text = table.concat(vim.tbl_map(function(chunk) return chunk[1] end, details.virt_text or {})),
    virt_lines = #(details.virt_lines or {}),
  }
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
    finish()
  end)
end)
