# Loads a Vagrantfile with a stand-in for Vagrant that records, per machine, its private network
# address and the shell provisioners it would run (inline command and environment), and prints
# them as JSON. Nothing is started: this is what `vagrant up` would do, for a test to repeat.
require "json"

class Recorder
  def initialize(plan, machine = nil)
    @plan = plan
    @machine = machine
  end

  def define(name, *_args)
    @plan[name] ||= { "address" => nil, "provision" => [] }
    yield Recorder.new(@plan, name)
  end

  def network(kind, ip: nil, **_options)
    @plan[@machine]["address"] = ip if @machine && kind == "private_network"
  end

  def provision(kind, inline: nil, env: {}, **_options)
    return unless @machine && kind == "shell"
    @plan[@machine]["provision"] << { "inline" => inline, "env" => env }
  end

  def method_missing(_name, *_args, **_options)
    yield Recorder.new(@plan, @machine) if block_given?
    self
  end

  def respond_to_missing?(*_args)
    true
  end
end

module Vagrant
  PLAN = {}
  def self.configure(_version)
    yield Recorder.new(PLAN)
  end
end

load ARGV.fetch(0)
puts JSON.generate(Vagrant::PLAN)
