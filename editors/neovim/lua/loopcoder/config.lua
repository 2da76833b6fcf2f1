-- setup()'s options: defaults, and a check that names the first bad key.
local compat = require('loopcoder.compat')

local M = {}

M.defaults = {
  cmd = { 'loopcoder', 'lsp' }, -- the first word is the executable: a name on $PATH or a path
  filetypes = { 'python', 'lua', 'rust', 'c', 'cpp', 'go', 'java', 'javascript', 'typescript',
                'javascriptreact', 'typescriptreact', 'sh' },
  root_markers = { '.git', 'pyproject.toml', 'package.json', 'Cargo.toml', 'go.mod' },
  settings = {}, -- initializationOptions: the keys of docs/configuration.md, camelCase
  inline = 'auto', -- 'auto', 'native' (0.12+: vim.lsp.inline_completion), 'extmark', or false
  debounce_ms = 150, -- extmark ghost text: the pause after a keystroke before asking
  keymaps = { accept = '<Tab>', accept_word = '<M-Right>', accept_line = '<M-Down>', dismiss = '<C-]>' },
}

-- The server's settings (docs/configuration.md) and the Lua types they take; the
-- server checks the values again and names the key when one is out of range.
local SERVER_KEYS = {
  model = 'string?', backend = 'string', url = 'string?', apiKey = 'string?', tokenizer = 'string?',
  threads = 'integer', socket = 'string?', device = 'string', dtype = 'string', quant = 'string',
  maxTokens = 'integer', suffixTokens = 'integer', contextTokens = 'integer', repoContextTokens = 'integer',
  actionTokens = 'integer', temperature = 'number', prewarm = 'boolean', cache = 'boolean', fimTemplate = 'string?',
}
local CHOICES = {
  backend = { 'local', 'inprocess', 'openai', 'tgi' },
  dtype = { 'auto', 'float32', 'bfloat16', 'float16' },
  quant = { 'auto', 'none', 'gguf', 'int8', 'int4', 'fp8' },
}
local INLINE = { auto = true, native = true, extmark = true }

local function fail(message)
  error('loopcoder.setup: ' .. message, 0)
end

local function is_list_of_strings(value)
  if type(value) ~= 'table' or #value == 0 then
    return false
  end
  for _, item in ipairs(value) do
    if type(item) ~= 'string' or item == '' then
      return false
    end
  end
  return #value == vim.tbl_count(value)
end

local function has_type(value, wanted)
  local optional = wanted:sub(-1) == '?'
  local base = optional and wanted:sub(1, -2) or wanted
  if value == nil or value == vim.NIL then
    return optional
  end
  if base == 'integer' then
    return type(value) == 'number' and value == math.floor(value)
  end
  return type(value) == base
end

local function check_settings(settings)
  if type(settings) ~= 'table' then
    fail(('settings must be a table of server settings, not %s'):format(type(settings)))
  end
  for key, value in pairs(settings) do
    local wanted = SERVER_KEYS[key]
    if not wanted then
      local known = vim.tbl_keys(SERVER_KEYS)
      table.sort(known)
      fail(('settings.%s is not a loopcoder setting (known: %s)'):format(tostring(key), table.concat(known, ', ')))
    end
    if not has_type(value, wanted) then
      fail(('settings.%s must be %s, not %s'):format(key, wanted:gsub('%?$', ' or nil'), vim.inspect(value)))
    end
    if CHOICES[key] and not vim.tbl_contains(CHOICES[key], value) then
      fail(('settings.%s must be one of %s, not %s'):format(key, table.concat(CHOICES[key], ', '), vim.inspect(value)))
    end
  end
end

local function check_keymaps(keymaps)
  if type(keymaps) ~= 'table' then
    fail('keymaps must be a table like { accept = "<Tab>" }, or false for none')
  end
  for name, lhs in pairs(keymaps) do
    if M.defaults.keymaps[name] == nil then
      fail(('keymaps.%s is not a loopcoder keymap (accept, accept_word, accept_line, dismiss)'):format(tostring(name)))
    end
    if lhs ~= false and (type(lhs) ~= 'string' or lhs == '') then
      fail(('keymaps.%s must be a key like "<Tab>", or false for none, not %s'):format(name, vim.inspect(lhs)))
    end
  end
end

--- How the ghost text is shown: 'native', 'extmark' or false.
local function inline_mode(inline)
  if inline == false then
    return false
  end
  if not INLINE[inline] then
    fail(('inline must be "auto", "native", "extmark" or false, not %s'):format(vim.inspect(inline)))
  end
  if inline == 'native' and not compat.has_native_inline then
    fail('inline = "native" needs Neovim 0.12 or later (vim.lsp.inline_completion); use "auto" or "extmark"')
  end
  if inline == 'auto' then
    return compat.has_native_inline and 'native' or 'extmark'
  end
  return inline
end

--- The options with defaults filled in, checked; a bad one raises an error naming it.
function M.resolve(opts)
  if opts ~= nil and type(opts) ~= 'table' then
    fail(('takes a table of options, not %s'):format(type(opts)))
  end
  opts = opts or {}
  for key in pairs(opts) do
    if M.defaults[key] == nil then
      fail(('unknown option %s (known: cmd, filetypes, root_markers, settings, inline, debounce_ms, keymaps)')
        :format(tostring(key)))
    end
  end
  local config = vim.tbl_extend('force', vim.deepcopy(M.defaults), opts)
  if opts.keymaps ~= nil and opts.keymaps ~= false then
    check_keymaps(opts.keymaps)
    config.keymaps = vim.tbl_extend('force', vim.deepcopy(M.defaults.keymaps), opts.keymaps)
  elseif opts.keymaps == false then
    config.keymaps = {}
  end
  if not is_list_of_strings(config.cmd) then
    fail(('cmd must be a list of strings like { "loopcoder", "lsp" }, not %s'):format(vim.inspect(config.cmd)))
  end
  if vim.fn.executable(config.cmd[1]) ~= 1 then
    fail(('cmd[1] %q is not an executable file or a command on $PATH: install loopcoder (`pip install -e .` '
      .. 'in its checkout) or set cmd = { "/path/to/loopcoder/.venv/bin/loopcoder", "lsp" }'):format(config.cmd[1]))
  end
  if not is_list_of_strings(config.filetypes) then
    fail(('filetypes must be a list of filetype names, not %s'):format(vim.inspect(config.filetypes)))
  end
  if not is_list_of_strings(config.root_markers) then
    fail(('root_markers must be a list of file names, not %s'):format(vim.inspect(config.root_markers)))
  end
  check_settings(config.settings)
  if type(config.debounce_ms) ~= 'number' or config.debounce_ms < 0 then
    fail(('debounce_ms must be a number of milliseconds >= 0, not %s'):format(vim.inspect(config.debounce_ms)))
  end
  config.inline = inline_mode(config.inline)
  return config
end

return M
